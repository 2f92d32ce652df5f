package acpi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func vmgenidConfig(addr uint64, gsi uint32) Config {
	c := testConfig(2)
	c.VMGenIDAddr, c.VMGenIDGSI = addr, gsi
	return c
}

// TestDSDTVMGenID reads the VM generation ID device and its Generic Event
// Device back from a built DSDT (checksum checked by tableAt).
func TestDSDTVMGenID(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name   string
		addr   uint64
		gsi    uint32
		lo, hi uint64
	}{
		{"below 4 GiB", 0xFEBFF000, 5, 0xFEBFF000, 0},
		{"above 4 GiB, page offset", 0x1_2345_6FF0, 7, 0x2345_6FF0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := make([]byte, 0x100000)
			tabs, err := Build(mem, 0xE0000, vmgenidConfig(tt.addr, tt.gsi))
			if err != nil {
				t.Fatal(err)
			}
			dsdt := tableAt(t, mem, tabs.DSDT, "DSDT")
			d, err := decodeAML(dsdt[HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{`\_SB_.PCI0`, `\_SB_.COM1`, `\_SB_.VGEN`, `\_SB_.GED0`}; !reflect.DeepEqual(d.devs, want) {
				t.Errorf("devices %v, want %v", d.devs, want)
			}
			want := map[string]any{
				`\_SB_.VGEN._HID`: "SMOL0001",
				`\_SB_.VGEN._CID`: "VM_GEN_COUNTER",
				`\_SB_.VGEN._DDN`: "VM_Gen_Counter",
				`\_SB_.VGEN.ADDR`: []any{tt.lo, tt.hi},
				`\_SB_.GED0._HID`: "ACPI0013",
				`\_SB_.GED0._UID`: uint64(0),
			}
			for k, w := range want {
				if got := d.names[k]; !reflect.DeepEqual(got, w) {
					t.Errorf("%s = %#v, want %#v", k, got, w)
				}
			}
			// ADDR's elements are DWordConsts, as the spec's example has them.
			if i := bytes.Index(dsdt, []byte("ADDR")); i < 0 || dsdt[i+4] != 0x12 || dsdt[i+7] != 0x0C || dsdt[i+12] != 0x0C {
				t.Errorf("ADDR is not a package of two DWordConsts: % x", dsdt[i:i+17])
			}
			crs, _ := d.names[`\_SB_.GED0._CRS`].([]byte)
			rs := resources(t, crs)
			wantIRQ := le.AppendUint32([]byte{0x89, 6, 0, 0x03, 1}, tt.gsi) // consumer, edge, active high, exclusive
			if len(rs) != 2 || !bytes.Equal(rs[0], wantIRQ) {
				t.Errorf("GED0._CRS % x, want % x and the end tag", crs, wantIRQ)
			}
			evt, ok := d.methods[`\_SB_.GED0._EVT`]
			if !ok || evt.args != 1 || evt.serialized {
				t.Fatalf("_EVT %+v (found %v), want 1 argument, not serialized", evt, ok)
			}
			// If (LEqual (Arg0, gsi)) { Notify (\_SB.VGEN, 0x80) }, written
			// out from the spec's opcodes.
			body := []byte{0x93, 0x68, 0x0A, byte(tt.gsi), 0x86, '\\', 0x2E}
			body = append(body, "_SB_VGEN"...)
			body = append(body, 0x0A, 0x80)
			wantEVT := append([]byte{0xA0, byte(len(body) + 1)}, body...)
			if !bytes.Equal(evt.body, wantEVT) {
				t.Errorf("_EVT body % x\nwant        % x", evt.body, wantEVT)
			}
		})
	}
}

// TestDSDTWithoutVMGenID: VMGenIDAddr 0 leaves both devices out.
func TestDSDTWithoutVMGenID(t *testing.T) {
	d, err := decodeAML(DSDT(testConfig(1))[HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if len(d.methods) != 0 || len(d.devs) != 2 {
		t.Errorf("devices %v, methods %v", d.devs, d.methods)
	}
}

func TestVMGenIDConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		addr uint64
		gsi  uint32
	}{
		{"not 8-byte aligned", 0xFEBFF004, 5},
		{"crosses a page", 0xFEBFFFF8, 5},
		{"GSI is PCI INTx", 0xFEBFF000, 17},
		{"GSI is the SCI", 0xFEBFF000, 9},
		{"GSI is COM1", 0xFEBFF000, 4},
		{"GSI is the timer", 0xFEBFF000, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(make([]byte, 0x100000), 0xE0000, vmgenidConfig(tt.addr, tt.gsi))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestIASLDisassemblesVMGenID: ACPICA's disassembler reads the method and
// the interrupt descriptor as intended.
func TestIASLDisassemblesVMGenID(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not installed (apt-get install acpica-tools); TestDSDTVMGenID still covers the AML")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dsdt.dat"), DSDT(vmgenidConfig(0xFEBFF000, 5)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(iasl, "-d", "dsdt.dat")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("iasl -d: %v\n%s", err, out)
	}
	dsl, err := os.ReadFile(filepath.Join(dir, "dsdt.dsl"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(dsl)), " ")
	for _, w := range []string{`Device (VGEN)`, `Name (_CID, "VM_GEN_COUNTER")`, `Name (ADDR, Package (0x02) { 0xFEBFF000, 0x00000000 })`,
		`Device (GED0)`, `Name (_HID, "ACPI0013" /* Generic Event Device */)`, `Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) { 0x00000005, }`,
		`Method (_EVT, 1, NotSerialized)`, `If ((Arg0 == 0x05)) { Notify (\_SB.VGEN, 0x80)`} {
		if !strings.Contains(text, w) {
			t.Errorf("disassembly lacks %q:\n%s", w, dsl)
		}
	}
	for _, bad := range []string{"Invalid", "Error", "Warning", "Unknown"} {
		if strings.Contains(string(dsl), bad) || strings.Contains(string(out), bad) {
			t.Errorf("iasl reports %q:\n%s", bad, out)
		}
	}
}
