package kvm

import (
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// Real-mode test guests, loaded at guestCodeAddr with CS base 0.
const guestCodeAddr = 0x1000

var (
	// counterGuest: mov dx,0x10; loop: inc cx; mov ax,cx; out dx,ax; jmp loop
	counterGuest = []byte{0xBA, 0x10, 0x00, 0x41, 0x89, 0xC8, 0xEF, 0xEB, 0xFA}
	// spinGuest: jmp $ (never exits on its own)
	spinGuest = []byte{0xEB, 0xFE}
)

// testVM is a VM with irqchip, PIT, 1 MiB of RAM holding code, and one vCPU
// in real mode at guestCodeAddr.
type testVM struct {
	sys  *System
	vm   *VM
	mem  *Memory
	vcpu *VCPU
}

func newTestVM(t *testing.T, code []byte) *testVM {
	t.Helper()
	sys, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if err := vm.SetTSSAddr(0xfffbd000); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetIdentityMapAddr(0xfffbc000); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.SetGSIRouting(LegacyRoutes()); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(); err != nil {
		t.Fatal(err)
	}
	mem, err := AllocMemory(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	copy(mem.Bytes()[guestCodeAddr:], code)
	if err := vm.SetMemory(0, 0, mem, 0); err != nil {
		t.Fatal(err)
	}
	v, err := vm.CreateVCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &testVM{sys: sys, vm: vm, mem: mem, vcpu: v}
}

func (tv *testVM) realMode(t *testing.T) {
	t.Helper()
	cpuid, err := tv.sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	if err := tv.vcpu.SetCPUID(cpuid); err != nil {
		t.Fatal(err)
	}
	s, err := tv.vcpu.Sregs()
	if err != nil {
		t.Fatal(err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	if err := tv.vcpu.SetSregs(s); err != nil {
		t.Fatal(err)
	}
	if err := tv.vcpu.SetRegs(Regs{RIP: guestCodeAddr, RFLAGS: 2}); err != nil {
		t.Fatal(err)
	}
}

// nextOut runs until the counter guest's next OUT to port 0x10 and returns
// the value written.
func nextOut(t *testing.T, v *VCPU) uint16 {
	t.Helper()
	for i := 0; i < 1000; i++ {
		e, err := v.Run()
		if err != nil {
			t.Fatal(err)
		}
		switch e.Reason {
		case ExitIntr:
			continue
		case ExitIO:
			if e.IO.In || e.IO.Port != 0x10 || e.IO.Size != 2 || e.IO.Count != 1 {
				t.Fatalf("unexpected IO exit %+v", e.IO)
			}
			return binary.LittleEndian.Uint16(e.IO.Data)
		default:
			t.Fatalf("unexpected exit %v", e.Reason)
		}
	}
	t.Fatal("no OUT after 1000 runs")
	return 0
}

func TestKVMRealModeCounter(t *testing.T) {
	kvmtest.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tv := newTestVM(t, counterGuest)
	tv.realMode(t)
	for want := uint16(1); want <= 5; want++ {
		if got := nextOut(t, tv.vcpu); got != want {
			t.Fatalf("OUT %d: got %d", want, got)
		}
	}
}

func TestKVMKickInterruptsRun(t *testing.T) {
	kvmtest.Require(t)
	tv := newTestVM(t, spinGuest)
	tv.realMode(t)
	type result struct {
		e   Exit
		err error
	}
	done := make(chan result, 1)
	bound := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tv.vcpu.Bind()
		close(bound)
		e, err := tv.vcpu.Run()
		done <- result{e, err}
	}()
	<-bound
	select {
	case r := <-done:
		t.Fatalf("spinning guest left KVM_RUN before a kick: %+v %v", r.e.Reason, r.err)
	case <-time.After(200 * time.Millisecond):
	}
	tv.vcpu.Kick()
	select {
	case r := <-done:
		if r.err != nil || r.e.Reason != ExitIntr {
			t.Fatalf("after Kick: exit %v, err %v; want %v", r.e.Reason, r.err, ExitIntr)
		}
	case <-time.After(10 * time.Second):
		// The vCPU thread cannot be stopped from here; the test process exits.
		t.Fatal("Kick did not bring the vCPU out of KVM_RUN within 10s")
	}
	// immediate_exit stays set until cleared: the next Run returns at once.
	if e, err := tv.vcpu.Run(); err != nil || e.Reason != ExitIntr {
		t.Fatalf("Run with immediate_exit set: exit %v, err %v", e.Reason, err)
	}
}

// TestKVMSaveRestoreContinues pauses the counter guest, saves vCPU and VM
// state, restores both into a fresh VM with a copy of memory and checks the
// guest continues counting where it stopped.
func TestKVMSaveRestoreContinues(t *testing.T) {
	kvmtest.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	src := newTestVM(t, counterGuest)
	src.realMode(t)
	const pauseAt = 41
	for i := uint16(1); i <= pauseAt; i++ {
		if got := nextOut(t, src.vcpu); got != i {
			t.Fatalf("OUT %d: got %d", i, got)
		}
	}
	// Complete the OUT without running further guest code.
	src.vcpu.SetImmediateExit(true)
	if e, err := src.vcpu.Run(); err != nil || e.Reason != ExitIntr {
		t.Fatalf("completing run: %v %v", e.Reason, err)
	}
	msrs, err := src.sys.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	if len(msrs) == 0 {
		t.Fatal("empty MSR index list")
	}
	vs, err := src.vcpu.SaveState(msrs)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := src.vm.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if vs.Regs.RCX != pauseAt {
		t.Fatalf("saved RCX = %d, want %d", vs.Regs.RCX, pauseAt)
	}
	if len(vs.MSRs) == 0 || len(vs.CPUID) == 0 || len(vs.XSAVE) < xsaveMinSize {
		t.Fatalf("saved state incomplete: %d MSRs, %d CPUID leaves, %d xsave bytes", len(vs.MSRs), len(vs.CPUID), len(vs.XSAVE))
	}

	dst := newTestVM(t, nil)
	copy(dst.mem.Bytes(), src.mem.Bytes())
	if err := dst.vm.RestoreState(ms); err != nil {
		t.Fatal(err)
	}
	if err := dst.vcpu.RestoreState(vs); err != nil {
		t.Fatal(err)
	}
	// The restored state reads back equal where KVM keeps it verbatim.
	regs, err := dst.vcpu.Regs()
	if err != nil {
		t.Fatal(err)
	}
	if regs != vs.Regs {
		t.Fatalf("restored regs %+v, saved %+v", regs, vs.Regs)
	}
	back, err := dst.vm.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	if back.IOAPIC != ms.IOAPIC || back.PICMaster != ms.PICMaster || back.PICSlave != ms.PICSlave {
		t.Fatalf("irqchip state did not round-trip")
	}
	for i := uint16(pauseAt + 1); i <= pauseAt+5; i++ {
		if got := nextOut(t, dst.vcpu); got != i {
			t.Fatalf("restored guest: OUT got %d, want %d", got, i)
		}
	}
	if err := dst.vcpu.RestoreState(VCPUState{ID: 7}); !errors.Is(err, ErrState) {
		t.Fatalf("restoring vCPU 7's state into vCPU 0: err %v, want ErrState", err)
	}
}

func TestKVMSystemQueries(t *testing.T) {
	kvmtest.Require(t)
	sys, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	var leaf0 *CPUIDEntry
	for i := range cpuid {
		if cpuid[i].Function == 0 {
			leaf0 = &cpuid[i]
		}
	}
	if leaf0 == nil || leaf0.EAX == 0 {
		t.Fatalf("supported CPUID has no leaf 0 with a max leaf: %d entries", len(cpuid))
	}
	msrs, err := sys.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	hasTSC := false
	for _, m := range msrs {
		hasTSC = hasTSC || m == 0x10 // IA32_TIME_STAMP_COUNTER
	}
	if !hasTSC {
		t.Fatalf("MSR index list (%d entries) lacks IA32_TSC", len(msrs))
	}
}
