package kvm

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// xsetbvGuest (16-bit real mode) reports CPUID.(0xD,0).EBX on port 0x10,
// sets CR4.OSXSAVE, writes XCR0 (the imm32 at xsetbvGuestXCR0), reports
// CPUID.(0xD,0).EBX again and halts.
var xsetbvGuest = []byte{
	0x66, 0xB8, 0x0D, 0x00, 0x00, 0x00, // mov eax, 0xd
	0x66, 0x31, 0xC9, // xor ecx, ecx
	0x0F, 0xA2, // cpuid
	0x66, 0x89, 0xD8, // mov eax, ebx
	0x66, 0xE7, 0x10, // out 0x10, eax
	0x0F, 0x20, 0xE0, // mov eax, cr4
	0x66, 0x0D, 0x00, 0x00, 0x04, 0x00, // or eax, CR4.OSXSAVE
	0x0F, 0x22, 0xE0, // mov cr4, eax
	0x66, 0x31, 0xC9, // xor ecx, ecx (XCR0)
	0x66, 0x31, 0xD2, // xor edx, edx
	0x66, 0xB8, 0x00, 0x00, 0x00, 0x00, // mov eax, imm32 (patched)
	0x0F, 0x01, 0xD1, // xsetbv
	0x66, 0xB8, 0x0D, 0x00, 0x00, 0x00, // mov eax, 0xd
	0x66, 0x31, 0xC9, // xor ecx, ecx
	0x0F, 0xA2, // cpuid
	0x66, 0x89, 0xD8, // mov eax, ebx
	0x66, 0xE7, 0x10, // out 0x10, eax
	0xF4, // hlt
}

const xsetbvGuestXCR0 = 37 // offset of the imm32 of the second mov eax

// xsaveSizeFor is the standard-format XSAVE area size for the XCR0 bits in
// mask: the legacy area and header (576 bytes), then each enabled component
// at the offset and with the size that leaf 0xD reports for it.
func xsaveSizeFor(cpuid []CPUIDEntry, mask uint64) uint32 {
	size := uint32(576)
	for _, e := range cpuid {
		if e.Function == 0xD && e.Index >= 2 && e.Index < 64 && mask&(1<<e.Index) != 0 {
			size = max(size, e.EBX+e.EAX)
		}
	}
	return size
}

// TestKVMXSETBVResizesXSAVELeaf: a guest's XSETBV reaches KVM, which then
// reports the XSAVE area size for the new XCR0 in CPUID.(0xD,0).EBX (Linux
// checks that size and warns "XSAVE consistency problem" when it is off).
// Under QEMU before 8.2 the lab's emulated SVM did not intercept XSETBV, KVM
// kept XCR0 = 1 and this size at 576 (docs/VMM.md).
func TestKVMXSETBVResizesXSAVELeaf(t *testing.T) {
	kvmtest.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sys, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	supported, err := sys.SupportedCPUID()
	sys.Close()
	if err != nil {
		t.Fatal(err)
	}
	var xcr0 uint64 = 1 // x87, plus SSE and AVX where supported
	for _, e := range supported {
		if e.Function == 0xD && e.Index == 0 {
			xcr0 |= uint64(e.EAX) & 0x6
		}
	}
	if xcr0&0x2 == 0 || supported == nil {
		t.Fatalf("KVM reports no SSE state in CPUID leaf 0xD: %#x", xcr0)
	}
	code := append([]byte(nil), xsetbvGuest...)
	binary.LittleEndian.PutUint32(code[xsetbvGuestXCR0:], uint32(xcr0))
	tv := newTestVM(t, code)
	tv.realMode(t)

	var sizes []uint32
	for i := 0; i < 100 && len(sizes) < 2; i++ {
		e, err := tv.vcpu.Run()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Reason == ExitIntr:
		case e.Reason == ExitIO && !e.IO.In && e.IO.Port == 0x10 && e.IO.Size == 4:
			sizes = append(sizes, binary.LittleEndian.Uint32(e.IO.Data))
		default:
			regs, _ := tv.vcpu.Regs()
			t.Fatalf("exit %v at RIP %#x (IO %+v) before both sizes were reported", e.Reason, regs.RIP, e.IO)
		}
	}
	if len(sizes) != 2 {
		t.Fatalf("got %d of 2 size reports", len(sizes))
	}
	xcrs, err := tv.vcpu.XCRS()
	if err != nil {
		t.Fatal(err)
	}
	if xcrs.NrXCRS < 1 || xcrs.XCRS[0].XCR != 0 || xcrs.XCRS[0].Value != xcr0 {
		t.Errorf("KVM_GET_XCRS after the guest's XSETBV(%#x): %d XCRs, first %+v", xcr0, xcrs.NrXCRS, xcrs.XCRS[0])
	}
	if want := xsaveSizeFor(supported, 1); sizes[0] != want {
		t.Errorf("CPUID.(0xD,0).EBX at reset (XCR0 = 1) = %d, want %d", sizes[0], want)
	}
	if want := xsaveSizeFor(supported, xcr0); sizes[1] != want {
		t.Errorf("CPUID.(0xD,0).EBX after XSETBV(%#x) = %d, want %d: KVM did not see the guest's XSETBV", xcr0, sizes[1], want)
	}
	t.Logf("XCR0 %#x: XSAVE area %d -> %d bytes [%s]", xcr0, sizes[0], sizes[1], kvmtest.Label())
}
