package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testConfig is the smolvm machine's configuration, written out here with
// literal numbers from the shared VMM design.
func testConfig(cpus int) Config {
	return Config{
		CPUs: cpus, LAPICAddr: 0xFEE00000, IOAPICAddr: 0xFEC00000, IOAPICID: uint8(cpus),
		SCI: 9, SleepControlPort: 0x600, SleepStatusPort: 0x601, ResetPort: 0x602, ResetValue: 1,
		S5SleepType: 5, PCIConfigPort: 0xCF8, PCIMMIOBase: 0xC0000000, PCIMMIOEnd: 0xFC000000,
		PCIIntxGSIBase: 16, COM1Port: 0x3F8, COM1IRQ: 4,
	}
}

func TestEISAID(t *testing.T) {
	tests := []struct {
		id   string
		want uint32
	}{
		// Byte strings as they appear in real firmware AML.
		{"PNP0A03", 0x030AD041},
		{"PNP0A08", 0x080AD041},
		{"PNP0501", 0x0105D041},
		{"PNP0C0F", 0x0F0CD041},
	}
	for _, tt := range tests {
		if got := EISAID(tt.id); got != tt.want {
			t.Errorf("EISAID(%q) = %#08x, want %#08x", tt.id, got, tt.want)
		}
	}
}

func TestPkgLength(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x01}},
		{62, []byte{0x3F}},
		{63, []byte{0x41, 0x04}},                    // 65 = 0x41
		{4093, []byte{0x4F, 0xFF}},                  // 4095
		{4094, []byte{0x81, 0x00, 0x01}},            // 4097
		{1<<20 - 4, []byte{0x8F, 0xFF, 0xFF}},       // 0xFFFFF
		{1<<20 - 3, []byte{0xC1, 0x00, 0x00, 0x01}}, // 0x100001
	}
	for _, tt := range tests {
		got := pkgLength(tt.n)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("pkgLength(%d) = % x, want % x", tt.n, got, tt.want)
		}
		// The decoder reads back the same end.
		buf := append(append([]byte{}, got...), make([]byte, tt.n)...)
		d := &amlDecoder{b: buf}
		end, err := d.pkgLength()
		if err != nil || end != len(buf) {
			t.Errorf("pkgLength(%d): decoded end %d, err %v, want %d", tt.n, end, err, len(buf))
		}
	}
}

func TestAMLIntegers(t *testing.T) {
	for _, v := range []uint64{0, 1, 2, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF, 0x100000000, ^uint64(0), ^uint64(0) - 1} {
		enc := amlInteger(v)
		d := &amlDecoder{b: enc}
		got, err := d.dataObject()
		if err != nil || got != v || d.pos != len(enc) {
			t.Errorf("amlInteger(%#x) = % x decodes to %v (err %v)", v, enc, got, err)
		}
	}
	if got := nameString(`\_SB.PCI0.S08`); !bytes.Equal(got, append([]byte{'\\', 0x2F, 3}, "_SB_PCI0S08_"...)) {
		t.Errorf("multi-segment name = % x", got)
	}
	if got := nameString(`\_SB.PCI0`); !bytes.Equal(got, append([]byte{'\\', 0x2E}, "_SB_PCI0"...)) {
		t.Errorf("dual name = % x", got)
	}
	if got := amlString("ab"); !bytes.Equal(got, []byte{0x0D, 'a', 'b', 0}) {
		t.Errorf("string = % x", got)
	}
}

// tableAt returns the table at addr with the length its header states.
func tableAt(t *testing.T, mem []byte, addr uint64, sig string) []byte {
	t.Helper()
	if addr+HeaderSize > uint64(len(mem)) {
		t.Fatalf("%s at %#x outside memory", sig, addr)
	}
	if got := string(mem[addr : addr+4]); got != sig {
		t.Fatalf("table at %#x is %q, want %q", addr, got, sig)
	}
	n := binary.LittleEndian.Uint32(mem[addr+4:])
	tbl := mem[addr : addr+uint64(n)]
	if Sum(tbl) != 0 {
		t.Errorf("%s checksum: bytes sum to %#x", sig, Sum(tbl))
	}
	if string(tbl[10:16]) != "SMOLVM" {
		t.Errorf("%s OEM id %q", sig, tbl[10:16])
	}
	return tbl
}

func TestBuild(t *testing.T) {
	le := binary.LittleEndian
	for _, cpus := range []int{1, 2, 8, 254} {
		t.Run(fmt.Sprintf("%d cpus", cpus), func(t *testing.T) {
			mem := make([]byte, 0x100000)
			tabs, err := Build(mem, 0xE0000, testConfig(cpus))
			if err != nil {
				t.Fatal(err)
			}
			// RSDP: both checksums, revision 2, length 36, XSDT pointer.
			r := mem[0xE0000 : 0xE0000+36]
			if string(r[:8]) != "RSD PTR " || Sum(r[:20]) != 0 || Sum(r) != 0 || r[15] != 2 ||
				le.Uint32(r[20:]) != 36 || le.Uint64(r[24:]) != tabs.XSDT {
				t.Fatalf("RSDP % x", r)
			}
			xsdt := tableAt(t, mem, tabs.XSDT, "XSDT")
			if len(xsdt) != 36+16 || le.Uint64(xsdt[36:]) != tabs.FADT || le.Uint64(xsdt[44:]) != tabs.MADT {
				t.Errorf("XSDT entries % x", xsdt[36:])
			}
			fadt := tableAt(t, mem, tabs.FADT, "FACP")
			checkFADT(t, fadt, tabs.DSDT)
			madt := tableAt(t, mem, tabs.MADT, "APIC")
			checkMADT(t, madt, cpus)
			dsdt := tableAt(t, mem, tabs.DSDT, "DSDT")
			checkDSDT(t, dsdt)
			if tabs.End != tabs.DSDT+uint64(len(dsdt)) {
				t.Errorf("End %#x, DSDT ends at %#x", tabs.End, tabs.DSDT+uint64(len(dsdt)))
			}
			for _, a := range []uint64{tabs.XSDT, tabs.FADT, tabs.MADT, tabs.DSDT} {
				if a%16 != 0 {
					t.Errorf("table at %#x not 16-byte aligned", a)
				}
			}
		})
	}
}

func checkFADT(t *testing.T, f []byte, dsdt uint64) {
	t.Helper()
	le := binary.LittleEndian
	gas := func(off int) (space, width uint8, addr uint64) { return f[off], f[off+1], le.Uint64(f[off+4:]) }
	checks := []struct {
		name string
		ok   bool
	}{
		{"length 276, revision 6", len(f) == 276 && f[8] == 6},
		{"DSDT", uint64(le.Uint32(f[40:])) == dsdt},
		{"X_DSDT", le.Uint64(f[140:]) == dsdt},
		{"SCI 9", le.Uint16(f[46:]) == 9},
		{"HW_REDUCED_ACPI", le.Uint32(f[112:])&(1<<20) != 0},
		{"RESET_REG_SUP", le.Uint32(f[112:])&(1<<10) != 0},
		{"reset value 1", f[128] == 1},
		{"no VGA, no CMOS RTC", le.Uint16(f[109:])&(1<<2|1<<5) == 1<<2|1<<5},
		{"no PM1 blocks", le.Uint32(f[56:]) == 0 && le.Uint32(f[64:]) == 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("FADT: %s", c.name)
		}
	}
	for _, g := range []struct {
		name string
		off  int
		port uint64
	}{{"RESET_REG", 116, 0x602}, {"SLEEP_CONTROL_REG", 244, 0x600}, {"SLEEP_STATUS_REG", 256, 0x601}} {
		if space, width, addr := gas(g.off); space != 1 || width != 8 || addr != g.port {
			t.Errorf("FADT %s = space %d width %d addr %#x, want I/O 8-bit %#x", g.name, space, width, addr, g.port)
		}
	}
}

func checkMADT(t *testing.T, m []byte, cpus int) {
	t.Helper()
	le := binary.LittleEndian
	if le.Uint32(m[36:]) != 0xFEE00000 || le.Uint32(m[40:])&1 != 1 {
		t.Errorf("MADT LAPIC address %#x flags %#x", le.Uint32(m[36:]), le.Uint32(m[40:]))
	}
	var lapics []int
	var ioapics, overrides, nmis int
	for off := 44; off < len(m); {
		typ, n := m[off], int(m[off+1])
		if n < 2 || off+n > len(m) {
			t.Fatalf("MADT entry at %d: length %d", off, n)
		}
		e := m[off : off+n]
		switch typ {
		case 0:
			if n != 8 || e[2] != e[3] || le.Uint32(e[4:]) != 1 {
				t.Errorf("LAPIC entry % x", e)
			}
			lapics = append(lapics, int(e[3]))
		case 1:
			ioapics++
			if n != 12 || int(e[2]) != cpus || le.Uint32(e[4:]) != 0xFEC00000 || le.Uint32(e[8:]) != 0 {
				t.Errorf("IOAPIC entry % x", e)
			}
		case 2:
			overrides++
			src, gsi, flags := e[3], le.Uint32(e[4:]), le.Uint16(e[8:])
			if !(src == 0 && gsi == 2 && flags == 0) && !(src == 9 && gsi == 9 && flags == 0xD) {
				t.Errorf("interrupt source override % x", e)
			}
		case 4:
			nmis++
			if n != 6 || e[2] != 0xFF || e[5] != 1 {
				t.Errorf("LAPIC NMI entry % x", e)
			}
		default:
			t.Errorf("unexpected MADT entry type %d", typ)
		}
		off += n
	}
	want := make([]int, cpus)
	for i := range want {
		want[i] = i
	}
	if !reflect.DeepEqual(lapics, want) || ioapics != 1 || overrides != 2 || nmis != 1 {
		t.Errorf("MADT: LAPIC ids %v, %d IOAPICs, %d overrides, %d NMIs", lapics, ioapics, overrides, nmis)
	}
	if len(m) != 44+8*cpus+12+10+10+6 {
		t.Errorf("MADT length %d", len(m))
	}
}

// resources splits a resource template into descriptors: tag -> bodies.
func resources(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for i := 0; i < len(b); {
		var n int
		if b[i]&0x80 == 0 {
			n = 1 + int(b[i]&7)
		} else {
			n = 3 + int(binary.LittleEndian.Uint16(b[i+1:]))
		}
		if i+n > len(b) {
			t.Fatalf("resource at %d runs past the buffer", i)
		}
		out = append(out, b[i:i+n])
		if b[i] == 0x79 {
			if i+n != len(b) {
				t.Errorf("bytes after the end tag")
			}
			return out
		}
		i += n
	}
	t.Fatalf("resource template without end tag")
	return nil
}

func checkDSDT(t *testing.T, dsdt []byte) {
	t.Helper()
	d, err := decodeAML(dsdt[HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.devs, []string{`\_SB_.PCI0`, `\_SB_.COM1`}) {
		t.Errorf("devices %v", d.devs)
	}
	want := map[string]any{
		`\_S5_`:           []any{uint64(5), uint64(0), uint64(0), uint64(0)},
		`\_SB_.PCI0._HID`: uint64(0x080AD041),
		`\_SB_.PCI0._CID`: uint64(0x030AD041),
		`\_SB_.PCI0._SEG`: uint64(0),
		`\_SB_.PCI0._BBN`: uint64(0),
		`\_SB_.PCI0._UID`: uint64(0),
		`\_SB_.COM1._HID`: uint64(0x0105D041),
		`\_SB_.COM1._UID`: uint64(0),
	}
	for k, w := range want {
		if got := d.names[k]; !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %v, want %v", k, got, w)
		}
	}
	crs, _ := d.names[`\_SB_.PCI0._CRS`].([]byte)
	le := binary.LittleEndian
	var got []string
	for _, r := range resources(t, crs) {
		switch r[0] {
		case 0x88: // word address space: type, min, max, len
			got = append(got, fmt.Sprintf("word type %d %#x-%#x len %#x", r[3], le.Uint16(r[8:]), le.Uint16(r[10:]), le.Uint16(r[14:])))
		case 0x87:
			got = append(got, fmt.Sprintf("dword type %d %#x-%#x len %#x", r[3], le.Uint32(r[10:]), le.Uint32(r[14:]), le.Uint32(r[22:])))
		case 0x47:
			got = append(got, fmt.Sprintf("io %#x len %d", le.Uint16(r[2:]), r[7]))
		case 0x79:
			got = append(got, "end")
		default:
			got = append(got, fmt.Sprintf("? % x", r))
		}
	}
	wantCRS := []string{
		"word type 2 0x0-0x0 len 0x1",
		"io 0xcf8 len 8",
		"word type 1 0x0-0xcf7 len 0xcf8",
		"word type 1 0xd00-0xffff len 0xf300",
		"dword type 0 0xc0000000-0xfbffffff len 0x3c000000",
		"end",
	}
	if !reflect.DeepEqual(got, wantCRS) {
		t.Errorf("PCI0._CRS:\n got %q\nwant %q", got, wantCRS)
	}
	com, _ := d.names[`\_SB_.COM1._CRS`].([]byte)
	if rs := resources(t, com); len(rs) != 3 || !bytes.Equal(rs[0], []byte{0x47, 1, 0xF8, 3, 0xF8, 3, 1, 8}) ||
		!bytes.Equal(rs[1], []byte{0x22, 0x10, 0x00}) {
		t.Errorf("COM1._CRS % x", com)
	}
	prt, _ := d.names[`\_SB_.PCI0._PRT`].([]any)
	if len(prt) != 31*4 {
		t.Fatalf("_PRT has %d entries, want 124", len(prt))
	}
	seen := map[[2]uint64]bool{}
	for _, e := range prt {
		p, ok := e.([]any)
		if !ok || len(p) != 4 {
			t.Fatalf("_PRT entry %v", e)
		}
		adr, pin, src, gsi := p[0].(uint64), p[1].(uint64), p[2].(uint64), p[3].(uint64)
		slot := adr >> 16
		if adr&0xFFFF != 0xFFFF || slot < 1 || slot > 31 || pin > 3 || src != 0 || gsi != 16+(slot+pin)%8 {
			t.Errorf("_PRT entry adr %#x pin %d source %d gsi %d", adr, pin, src, gsi)
		}
		seen[[2]uint64{slot, pin}] = true
	}
	if len(seen) != 124 {
		t.Errorf("_PRT covers %d slot/pin pairs", len(seen))
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		mem    int
		want   error
	}{
		{"no cpus", func(c *Config) { c.CPUs = 0 }, 0x100000, ErrInvalidConfig},
		{"255 cpus", func(c *Config) { c.CPUs = 255; c.IOAPICID = 255 }, 0x100000, ErrInvalidConfig},
		{"IOAPIC id collides", func(c *Config) { c.IOAPICID = 1 }, 0x100000, ErrInvalidConfig},
		{"SCI not ISA", func(c *Config) { c.SCI = 20 }, 0x100000, ErrInvalidConfig},
		{"empty MMIO window", func(c *Config) { c.PCIMMIOEnd = uint64(c.PCIMMIOBase) }, 0x100000, ErrInvalidConfig},
		{"MMIO window above 4 GiB", func(c *Config) { c.PCIMMIOEnd = 1<<32 + 1 }, 0x100000, ErrInvalidConfig},
		{"no room", nil, 0xE0100, ErrNoRoom},
		{"base past memory", nil, 0x1000, ErrNoRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(2)
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			_, err := Build(make([]byte, tt.mem), 0xE0000, c)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestIASLDisassembles feeds the tables to ACPICA's disassembler, an
// independent parser, and checks it reads them without complaint.
func TestIASLDisassembles(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools); the Go decoder tests still cover the AML")
	}
	mem := make([]byte, 0x100000)
	tabs, err := Build(mem, 0xE0000, testConfig(2))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, addr := range map[string]uint64{"dsdt": tabs.DSDT, "apic": tabs.MADT, "facp": tabs.FADT} {
		n := binary.LittleEndian.Uint32(mem[addr+4:])
		if err := os.WriteFile(filepath.Join(dir, name+".dat"), mem[addr:addr+uint64(n)], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"dsdt", []string{`Name (\_S5, Package (0x04)`, `Device (PCI0)`, `EisaId ("PNP0A08")`, `EisaId ("PNP0A03")`,
			`WordBusNumber (ResourceProducer`, `0xFBFFFFFF`, `Name (_PRT, Package (0x7C)`, `Device (COM1)`, `IRQNoFlags ()`}},
		{"apic", []string{"Local Apic Address : FEE00000", "Local Apic ID : 01", "I/O Apic ID : 02", "Interrupt Input LINT : 01"}},
		{"facp", []string{"Hardware Reduced (V5) : 1", "Address : 0000000000000600", "Value to cause reset : 01"}},
	} {
		cmd := exec.Command(iasl, "-d", tc.name+".dat")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("iasl -d %s: %v\n%s", tc.name, err, out)
		}
		dsl, err := os.ReadFile(filepath.Join(dir, tc.name+".dsl"))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(string(dsl)), " ")
		for _, w := range tc.want {
			if !strings.Contains(text, strings.Join(strings.Fields(w), " ")) {
				t.Errorf("%s disassembly lacks %q", tc.name, w)
			}
		}
		for _, bad := range []string{"Invalid", "Error", "Warning", "Unknown"} {
			if strings.Contains(string(dsl), bad) || strings.Contains(string(out), bad) {
				t.Errorf("iasl %s reports %q:\n%s", tc.name, bad, out)
			}
		}
	}
}
