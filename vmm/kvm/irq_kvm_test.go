package kvm

import (
	"encoding/binary"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

func newEventFD(t *testing.T) int {
	t.Helper()
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func readEventFD(t *testing.T, fd int) uint64 {
	t.Helper()
	var b [8]byte
	n, err := unix.Read(fd, b[:])
	if err == unix.EAGAIN {
		return 0
	}
	if err != nil || n != 8 {
		t.Fatalf("read eventfd: %d %v", n, err)
	}
	return binary.LittleEndian.Uint64(b[:])
}

// TestKVMIOEventFD: a guest OUT to a port with an ioeventfd signals the
// eventfd instead of exiting; the next OUT elsewhere still exits.
func TestKVMIOEventFD(t *testing.T) {
	kvmtest.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// mov dx,0x300; mov al,7; out dx,al; mov dx,0x10; out dx,ax; jmp $
	code := []byte{0xBA, 0x00, 0x03, 0xB0, 0x07, 0xEE, 0xBA, 0x10, 0x00, 0xEF, 0xEB, 0xFE}
	tv := newTestVM(t, code)
	tv.realMode(t)
	fd := newEventFD(t)
	seven := uint64(7)
	if err := tv.vm.SetIOEventFD(IOEventFD{FD: fd, Addr: 0x300, Len: 1, PIO: true, DataMatch: &seven}, false); err != nil {
		t.Fatal(err)
	}
	e, err := tv.vcpu.Run()
	if err != nil {
		t.Fatal(err)
	}
	if e.Reason != ExitIO || e.IO.Port != 0x10 {
		t.Fatalf("first exit %v port %#x, want the OUT to 0x10 (0x300 must not exit)", e.Reason, e.IO.Port)
	}
	if n := readEventFD(t, fd); n != 1 {
		t.Fatalf("eventfd count %d, want 1", n)
	}
	if err := tv.vm.SetIOEventFD(IOEventFD{FD: fd, Addr: 0x300, Len: 1, PIO: true, DataMatch: &seven}, true); err != nil {
		t.Fatalf("deassign: %v", err)
	}
}

// TestKVMIRQFDAndMSI: a write to an irqfd raises its GSI on the PIC, and an
// MSI to APIC ID 0 lands in the LAPIC's IRR.
func TestKVMIRQFDAndMSI(t *testing.T) {
	kvmtest.Require(t)
	tv := newTestVM(t, spinGuest)
	fd := newEventFD(t)
	const gsi = 5
	if err := tv.vm.IRQFD(fd, gsi, false); err != nil {
		t.Fatal(err)
	}
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.Fatal(err)
	}
	// KVM injects an irqfd's interrupt from a workqueue, not inside the
	// write: poll the PIC, bounded.
	var irr uint8
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := tv.vm.SaveState()
		if err != nil {
			t.Fatal(err)
		}
		if irr = st.PICMaster.IRR; irr&(1<<gsi) != 0 || time.Now().After(deadline) {
			break
		}
	}
	if irr&(1<<gsi) == 0 {
		t.Fatalf("PIC master IRR %#x lacks IRQ %d within 5 s of the irqfd write", irr, gsi)
	}
	if err := tv.vm.IRQFD(fd, gsi, true); err != nil {
		t.Fatalf("deassign: %v", err)
	}

	// Software-enable the LAPIC (SVR bit 8) so that it accepts fixed
	// interrupts, then send vector 0x41 to APIC ID 0.
	lapic, err := tv.vcpu.LAPIC()
	if err != nil {
		t.Fatal(err)
	}
	svr := binary.LittleEndian.Uint32(lapic.Regs[0xF0:])
	binary.LittleEndian.PutUint32(lapic.Regs[0xF0:], svr|0x1FF)
	if err := tv.vcpu.SetLAPIC(lapic); err != nil {
		t.Fatal(err)
	}
	const vector = 0x41
	if err := tv.vm.SignalMSI(0xFEE00000, vector); err != nil {
		t.Fatal(err)
	}
	if lapic, err = tv.vcpu.LAPIC(); err != nil {
		t.Fatal(err)
	}
	lirr := binary.LittleEndian.Uint32(lapic.Regs[0x200+vector/32*0x10:])
	if lirr&(1<<(vector%32)) == 0 {
		t.Fatalf("LAPIC IRR word %d = %#x lacks vector %#x after KVM_SIGNAL_MSI", vector/32, lirr, vector)
	}
}
