package amd64

import "fmt"

// E820 memory types (boot_params.e820_table[].type).
const (
	E820RAM      = 1
	E820Reserved = 2
	E820ACPI     = 3
	E820NVS      = 4
)

// E820Entry is one range of the BIOS memory map handed to the kernel.
type E820Entry struct {
	Addr uint64
	Size uint64
	Type uint32
}

// MaxE820Entries is the capacity of boot_params.e820_table.
const MaxE820Entries = 128

// E820Map returns the memory map of a guest with memSize bytes of RAM:
//
//	[0, EBDAStart)                  RAM (conventional memory)
//	[EBDAStart, HighMemStart)       reserved (EBDA, VGA hole, BIOS area, ACPI tables)
//	[HighMemStart, low RAM top)     RAM, up to 3 GiB
//	[VMGenIDAddr, +4 KiB)           reserved (VM generation ID page)
//	[IOAPICAddr, +4 KiB)            reserved (IOAPIC)
//	[LAPICAddr, +4 KiB)             reserved (LAPIC)
//	[4 GiB, 4 GiB + memSize-3 GiB)  RAM, when memSize > 3 GiB
//
// The PCI MMIO window is deliberately not marked reserved: Linux clips PCI
// host bridge windows (the DSDT's _CRS) against e820 reserved ranges, which
// would leave no room for BARs. The ACPI tables sit in the reserved BIOS
// area, where the kernel finds them through boot_params.acpi_rsdp_addr.
func E820Map(memSize uint64) ([]E820Entry, error) {
	if memSize <= HighMemStart {
		return nil, fmt.Errorf("amd64: e820: %#x bytes of RAM, need more than %#x: %w", memSize, HighMemStart, ErrMemoryTooSmall)
	}
	low := LowRAMSize(memSize)
	m := []E820Entry{
		{0, EBDAStart, E820RAM},
		{EBDAStart, HighMemStart - EBDAStart, E820Reserved},
		{HighMemStart, low - HighMemStart, E820RAM},
		{VMGenIDAddr, pageSize, E820Reserved},
		{IOAPICAddr, APICPageSize, E820Reserved},
		{LAPICAddr, APICPageSize, E820Reserved},
	}
	if memSize > MMIOHoleStart {
		m = append(m, E820Entry{HighRAMStart, memSize - MMIOHoleStart, E820RAM})
	}
	return m, nil
}
