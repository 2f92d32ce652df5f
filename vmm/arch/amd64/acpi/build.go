package acpi

import "fmt"

// Tables are the guest physical addresses Build wrote the tables at.
type Tables struct {
	RSDP, XSDT, FADT, MADT, DSDT uint64
	// End is the first address past the last table.
	End uint64
}

// tableAlign is the alignment of each table.
const tableAlign = 16

// Build writes RSDP, XSDT, FADT, MADT and DSDT into mem (guest memory
// indexed by physical address) starting at base, each 16-byte aligned, the
// RSDP first. The tables must end within len(mem): pass mem sliced to the
// end of the room reserved for them.
func Build(mem []byte, base uint64, c Config) (Tables, error) {
	if err := c.validate(); err != nil {
		return Tables{}, err
	}
	align := func(a uint64) uint64 { return (a + tableAlign - 1) &^ (tableAlign - 1) }
	var t Tables
	dsdt := DSDT(c)
	madt := MADT(c)
	t.RSDP = base
	t.XSDT = align(t.RSDP + RSDPSize)
	t.FADT = align(t.XSDT + HeaderSize + 2*8)
	t.MADT = align(t.FADT + fadtSize)
	t.DSDT = align(t.MADT + uint64(len(madt)))
	t.End = t.DSDT + uint64(len(dsdt))
	if t.End > uint64(len(mem)) || base > t.End {
		return Tables{}, fmt.Errorf("acpi: tables at %#x..%#x, memory ends at %#x: %w", base, t.End, len(mem), ErrNoRoom)
	}
	clear(mem[base:t.End])
	copy(mem[t.RSDP:], RSDP(t.XSDT))
	copy(mem[t.XSDT:], XSDT(t.FADT, t.MADT))
	copy(mem[t.FADT:], FADT(c, t.DSDT))
	copy(mem[t.MADT:], madt)
	copy(mem[t.DSDT:], dsdt)
	return t, nil
}
