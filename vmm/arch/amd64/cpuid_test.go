package amd64

import (
	"encoding/binary"
	"testing"
)

// vendorEntry builds leaf 0 for a vendor string.
func vendorEntry(maxLeaf uint32, v string) CPUIDEntry {
	le := binary.LittleEndian
	b := []byte(v)
	return CPUIDEntry{Function: 0, EAX: maxLeaf, EBX: le.Uint32(b[0:]), EDX: le.Uint32(b[4:]), ECX: le.Uint32(b[8:])}
}

// A trimmed KVM_GET_SUPPORTED_CPUID from an Intel host (values from a
// hybrid desktop part, topology leaves describing the host's 24 threads).
func intelTable() []CPUIDEntry {
	sig := CPUIDFlagSignificantIndex
	return []CPUIDEntry{
		vendorEntry(0x1F, "GenuineIntel"),
		{Function: 1, EAX: 0x906A3, EBX: 0x17100800, ECX: 0x7FFAFBFF, EDX: 0xBFEBFBFF},
		{Function: 3, EAX: 0, EBX: 0, ECX: 0x1234, EDX: 0x5678},
		{Function: 4, Index: 0, Flags: uint32(sig), EAX: 0xFC004121, EBX: 0x02C0003F, ECX: 0x3F},
		{Function: 4, Index: 1, Flags: uint32(sig), EAX: 0xFC004122, EBX: 0x01C0003F, ECX: 0x3F},
		{Function: 4, Index: 2, Flags: uint32(sig), EAX: 0xFC01C143, EBX: 0x0240003F, ECX: 0x7FF},
		{Function: 4, Index: 3, Flags: uint32(sig), EAX: 0xFC1FC163, EBX: 0x02C0003F, ECX: 0x9FFF},
		{Function: 4, Index: 4, Flags: uint32(sig)},
		{Function: 7, Index: 0, Flags: uint32(sig), EBX: 0x239C27EB, EDX: 0xFC18C410},
		{Function: 0xB, Index: 0, Flags: uint32(sig), EAX: 1, EBX: 2, ECX: 0x100, EDX: 7},
		{Function: 0xB, Index: 1, Flags: uint32(sig), EAX: 7, EBX: 24, ECX: 0x201, EDX: 7},
		{Function: 0x1A, EAX: 0x40000001},
		{Function: 0x1F, Index: 0, Flags: uint32(sig), EAX: 1, EBX: 2, ECX: 0x100, EDX: 7},
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4B4D564B, ECX: 0x564B4D56, EDX: 0x4D},
		{Function: 0x40000001, EAX: 0x01007AFB},
		{Function: 0x80000008, EAX: 0x3027, ECX: 0},
	}
}

func amdTable() []CPUIDEntry {
	sig := uint32(CPUIDFlagSignificantIndex)
	return []CPUIDEntry{
		vendorEntry(0x10, "AuthenticAMD"),
		{Function: 1, EAX: 0xA20F12, EBX: 0x0C100800, ECX: 0x7ED8320B, EDX: 0x178BFBFF},
		{Function: 4, Index: 0, Flags: sig, EAX: 0x121}, // reserved on AMD: left alone
		{Function: 0x40000000, EAX: 0x40000001, EBX: 0x4B4D564B, ECX: 0x564B4D56, EDX: 0x4D},
		{Function: 0x80000008, EAX: 0x3030, ECX: 0x700F},
		{Function: 0x8000001D, Index: 0, Flags: sig, EAX: 0x4121},
		{Function: 0x8000001D, Index: 3, Flags: sig, EAX: 0x3C163},
		{Function: 0x8000001E, EAX: 0x1F, EBX: 0x10F, ECX: 0x300},
		{Function: 0x80000026, Index: 0, Flags: sig, EAX: 1},
	}
}

func find(es []CPUIDEntry, fn, idx uint32) (CPUIDEntry, int) {
	var found CPUIDEntry
	n := 0
	for _, e := range es {
		if e.Function == fn && e.Index == idx {
			found = e
			n++
		}
	}
	return found, n
}

func TestFilterCPUID(t *testing.T) {
	tests := []struct {
		name   string
		table  func() []CPUIDEntry
		cpu, n int
		check  func(t *testing.T, out []CPUIDEntry)
	}{
		{"intel leaf 1 cpu 1 of 2", intelTable, 1, 2, func(t *testing.T, out []CPUIDEntry) {
			e, _ := find(out, 1, 0)
			if e.EBX != 0x01020800 {
				t.Errorf("leaf 1 EBX = %#x, want APIC id 1, 2 logical, clflush 8", e.EBX)
			}
			if e.ECX&(1<<31) == 0 || e.ECX&(1<<24) == 0 || e.EDX&(1<<28) == 0 {
				t.Errorf("leaf 1 ECX %#x EDX %#x: want hypervisor, TSC deadline, HTT", e.ECX, e.EDX)
			}
			if e.EAX != 0x906A3 {
				t.Errorf("leaf 1 EAX changed: %#x", e.EAX)
			}
		}},
		{"intel single cpu clears HTT", intelTable, 0, 1, func(t *testing.T, out []CPUIDEntry) {
			e, _ := find(out, 1, 0)
			if e.EBX>>16 != 0x0001 || e.EDX&(1<<28) != 0 {
				t.Errorf("leaf 1 EBX %#x EDX %#x", e.EBX, e.EDX)
			}
		}},
		{"intel leaf 4 cores and sharing", intelTable, 2, 3, func(t *testing.T, out []CPUIDEntry) {
			want := map[uint32]uint32{ // 3 vCPUs: 2 core bits -> 3 in [31:26]
				0: 0x0C000121, // L1d: private
				1: 0x0C000122, // L1i
				2: 0x0C000143, // L2: private
				3: 0x0C00C163, // L3: shared by 4 ids
				4: 0,          // terminator untouched
			}
			for idx, w := range want {
				if e, _ := find(out, 4, idx); e.EAX != w {
					t.Errorf("leaf 4.%d EAX = %#x, want %#x", idx, e.EAX, w)
				}
			}
		}},
		{"intel topology leaves rebuilt", intelTable, 3, 4, func(t *testing.T, out []CPUIDEntry) {
			for _, fn := range []uint32{0xB, 0x1F} {
				want := []CPUIDEntry{
					{Function: fn, Index: 0, Flags: 1, EAX: 0, EBX: 1, ECX: 0x100, EDX: 3},
					{Function: fn, Index: 1, Flags: 1, EAX: 2, EBX: 4, ECX: 0x201, EDX: 3},
					{Function: fn, Index: 2, Flags: 1, EAX: 0, EBX: 0, ECX: 2, EDX: 3},
				}
				for _, w := range want {
					if e, n := find(out, fn, w.Index); n != 1 || e != w {
						t.Errorf("leaf %#x.%d = %+v (%d copies), want %+v", fn, w.Index, e, n, w)
					}
				}
			}
		}},
		{"intel host-only leaves removed", intelTable, 0, 2, func(t *testing.T, out []CPUIDEntry) {
			for _, fn := range []uint32{3, 0x1A} {
				if _, n := find(out, fn, 0); n != 0 {
					t.Errorf("leaf %#x kept", fn)
				}
			}
			if e, _ := find(out, 7, 0); e.EDX&(1<<15) != 0 || e.EBX != 0x239C27EB {
				t.Errorf("leaf 7 EDX %#x EBX %#x: hybrid bit must go, the rest stay", e.EDX, e.EBX)
			}
			if e, n := find(out, 0x40000000, 0); n != 1 || e.EBX != 0x4B4D564B {
				t.Errorf("KVM signature leaf: %+v", e)
			}
			if e, _ := find(out, 0x80000008, 0); e.ECX != 0 {
				t.Errorf("Intel 0x80000008 ECX changed to %#x", e.ECX)
			}
		}},
		{"amd core count and extended APIC id", amdTable, 5, 6, func(t *testing.T, out []CPUIDEntry) {
			if e, _ := find(out, 0x80000008, 0); e.ECX != 0x3005 {
				t.Errorf("0x80000008 ECX = %#x, want ApicIdSize 3, NC 5", e.ECX)
			}
			if e, _ := find(out, 0x8000001E, 0); e.EAX != 5 || e.EBX != 5 || e.ECX != 0 {
				t.Errorf("0x8000001E = %+v", e)
			}
			if e, _ := find(out, 0x8000001D, 0); e.EAX != 0x121 {
				t.Errorf("0x8000001D.0 EAX = %#x (L1 private)", e.EAX)
			}
			if e, _ := find(out, 0x8000001D, 3); e.EAX != 0x1C163 {
				t.Errorf("0x8000001D.3 EAX = %#x (L3 shared by 8 ids)", e.EAX)
			}
			if e, _ := find(out, 4, 0); e.EAX != 0x121 {
				t.Errorf("AMD leaf 4 changed: %#x", e.EAX)
			}
			if _, n := find(out, 0x80000026, 0); n != 0 {
				t.Errorf("0x80000026 kept")
			}
			if _, n := find(out, 0xB, 0); n != 0 {
				t.Errorf("leaf 0xB invented where the host has none")
			}
			if e, _ := find(out, 1, 0); e.EBX>>24 != 5 || e.EBX>>16&0xFF != 6 {
				t.Errorf("leaf 1 EBX = %#x", e.EBX)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.table()
			orig := tt.table()
			out := FilterCPUID(in, tt.cpu, tt.n)
			for i := range in {
				if in[i] != orig[i] {
					t.Fatalf("input entry %d modified", i)
				}
			}
			tt.check(t, out)
		})
	}
}

func TestBootMSRs(t *testing.T) {
	want := map[uint32]uint64{
		0x174: 0, 0x175: 0, 0x176: 0, 0xC0000081: 0, 0xC0000082: 0, 0xC0000083: 0, 0xC0000084: 0, 0xC0000102: 0,
		0x1A0: 1, 0x2FF: 0x806,
	}
	got := BootMSRs()
	if len(got) != len(want) {
		t.Fatalf("%d MSRs, want %d", len(got), len(want))
	}
	for _, m := range got {
		if w, ok := want[m.Index]; !ok || w != m.Data {
			t.Errorf("MSR %#x = %#x, want %#x (listed %v)", m.Index, m.Data, w, ok)
		}
	}
}

func TestSetupLAPIC(t *testing.T) {
	le := binary.LittleEndian
	regs := make([]byte, 0x400)
	le.PutUint32(regs[0x350:], 0x00010000) // masked, fixed
	le.PutUint32(regs[0x360:], 0x00010700) // masked, ExtINT
	le.PutUint32(regs[0x320:], 0x12345)    // timer: untouched
	if err := SetupLAPIC(regs); err != nil {
		t.Fatal(err)
	}
	if got := le.Uint32(regs[0x350:]); got != 0x00010700 {
		t.Errorf("LINT0 = %#x, want ExtINT with mask kept", got)
	}
	if got := le.Uint32(regs[0x360:]); got != 0x00010400 {
		t.Errorf("LINT1 = %#x, want NMI with mask kept", got)
	}
	if got := le.Uint32(regs[0x320:]); got != 0x12345 {
		t.Errorf("timer LVT changed to %#x", got)
	}
	if err := SetupLAPIC(make([]byte, 0x100)); err == nil {
		t.Errorf("short register page accepted")
	}
}

// TestFilterCPUIDKeepsXSAVELeaf: leaf 0xD reaches every vCPU exactly as KVM
// reported it. KVM rewrites 0xD.0 EBX (and 0xD.1 EBX with XSAVES/XSAVEC)
// from the vCPU's XCR0 at KVM_SET_CPUID2 and at each XCR0 change; a size the
// VMM computed would go stale and trip Linux's "XSAVE consistency problem"
// check. The values are the lab's (QEMU -cpu max: x87, SSE, AVX, PKRU).
func TestFilterCPUIDKeepsXSAVELeaf(t *testing.T) {
	sig := uint32(CPUIDFlagSignificantIndex)
	xsave := []CPUIDEntry{
		{Function: 0xD, Index: 0, Flags: sig, EAX: 0x207, EBX: 0x240, ECX: 0xA88},
		{Function: 0xD, Index: 1, Flags: sig, EAX: 0x5},
		{Function: 0xD, Index: 2, Flags: sig, EAX: 0x100, EBX: 0x240},
		{Function: 0xD, Index: 9, Flags: sig, EAX: 0x8, EBX: 0xA80},
	}
	for _, tc := range []struct {
		name  string
		table func() []CPUIDEntry
	}{{"amd", amdTable}, {"intel", intelTable}} {
		for cpu := range 2 {
			in := append(tc.table(), xsave...)
			out := FilterCPUID(in, cpu, 2)
			for _, w := range xsave {
				if e, n := find(out, w.Function, w.Index); n != 1 || e != w {
					t.Errorf("%s cpu %d: leaf 0xD.%d = %+v (%d copies), want %+v", tc.name, cpu, w.Index, e, n, w)
				}
			}
			// The largest area (0xD.0 ECX) holds every component that
			// 0xD.0 EAX lists, at the offset and size its subleaf gives.
			top, _ := find(out, 0xD, 0)
			for bit := uint32(2); bit < 32; bit++ {
				if top.EAX&(1<<bit) == 0 {
					continue
				}
				c, n := find(out, 0xD, bit)
				if n != 1 || c.EBX+c.EAX > top.ECX {
					t.Errorf("%s cpu %d: component %d at %#x+%#x does not fit the %#x-byte area", tc.name, cpu, bit, c.EBX, c.EAX, top.ECX)
				}
			}
		}
	}
}

// TestFilterCPUIDHidesNestedVirtualization: VMX and SVM never reach a guest;
// the bits beside them stay.
func TestFilterCPUIDHidesNestedVirtualization(t *testing.T) {
	amdExt := CPUIDEntry{Function: 0x80000001, EAX: 0xA20F12, ECX: 0x75C237FF, EDX: 0x2FD3FBFF}
	for _, tc := range []struct {
		name  string
		table []CPUIDEntry
		fn    uint32
		bit   uint32
		added uint32 // bits FilterCPUID sets in that leaf's ECX anyway
	}{
		{"intel vmx", intelTable(), 1, 1 << 5, leaf1ECXHypervisor | leaf1ECXTSCDeadline},
		{"amd svm", append(amdTable(), amdExt), 0x80000001, 1 << 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, _ := find(tc.table, tc.fn, 0)
			if in.ECX&tc.bit == 0 {
				t.Fatalf("test table lacks bit %#x in leaf %#x ECX %#x", tc.bit, tc.fn, in.ECX)
			}
			e, n := find(FilterCPUID(tc.table, 0, 2), tc.fn, 0)
			if want := in.ECX&^tc.bit | tc.added; n != 1 || e.ECX != want {
				t.Errorf("leaf %#x ECX = %#x (%d copies), want %#x (bit %#x clear, the rest kept)", tc.fn, e.ECX, n, want, tc.bit)
			}
		})
	}
}
