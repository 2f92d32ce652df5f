package kvm

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VCPU is one virtual CPU. Run, the state getters/setters and Bind belong to
// the one goroutine that runs it (locked to its OS thread); Kick may be called
// from anywhere.
type VCPU struct {
	fd  int
	id  int
	vm  *VM
	run []byte // the mmap'd struct kvm_run
	tid atomic.Int32
}

// CreateVCPU creates vCPU id (its initial APIC ID) and maps its kvm_run page.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	if vm.fd < 0 {
		return nil, ErrClosed
	}
	fd, err := ioctl(vm.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VCPU %d: %w", id, err)
	}
	unix.CloseOnExec(int(fd))
	run, err := unix.Mmap(int(fd), 0, vm.sys.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("kvm: mmap kvm_run of vCPU %d: %w", id, err)
	}
	return &VCPU{fd: int(fd), id: id, vm: vm, run: run}, nil
}

// ID is the vCPU's index (and initial APIC ID).
func (v *VCPU) ID() int { return v.id }

// Close unmaps kvm_run and closes the vCPU fd. The vCPU must not be running.
func (v *VCPU) Close() error {
	if v.fd < 0 {
		return nil
	}
	err := unix.Munmap(v.run)
	if cerr := unix.Close(v.fd); err == nil {
		err = cerr
	}
	v.fd, v.run = -1, nil
	return err
}

func (v *VCPU) header() *runHeader { return (*runHeader)(unsafe.Pointer(&v.run[0])) }

// Bind records the calling OS thread as the one that runs this vCPU, so that
// Kick can interrupt it. Call it from the vCPU goroutine after
// runtime.LockOSThread.
func (v *VCPU) Bind() { v.tid.Store(int32(unix.Gettid())) }

// Kick makes the vCPU leave KVM_RUN soon: it sets kvm_run.immediate_exit (so
// the next KVM_RUN returns at once) and signals the bound thread with SIGURG
// (so a KVM_RUN in progress returns EINTR). Run then reports ExitIntr. Clear
// immediate_exit with SetImmediateExit(false) before running the guest again.
func (v *VCPU) Kick() {
	v.SetImmediateExit(true)
	if tid := v.tid.Load(); tid != 0 {
		// ESRCH (the thread is gone) is fine: then it is not in KVM_RUN.
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG)
	}
}

// SetImmediateExit sets or clears kvm_run.immediate_exit. The field is one
// byte shared with the kernel; an aligned byte store is atomic on x86.
func (v *VCPU) SetImmediateExit(on bool) {
	var b uint8
	if on {
		b = 1
	}
	v.run[unsafe.Offsetof(runHeader{}.ImmediateExit)] = b
}

// Run enters the guest until the next exit (KVM_RUN). A signal or
// immediate_exit yields Exit{Reason: ExitIntr} and no error. After an IO or
// MMIO exit the access completes only at the next Run: to stop with
// consistent state, Kick and Run once more.
func (v *VCPU) Run() (Exit, error) {
	if v.fd < 0 {
		return Exit{}, ErrClosed
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(v.fd), kvmRun, 0)
		switch errno {
		case 0:
			return v.decodeExit()
		case unix.EINTR:
			return Exit{Reason: ExitIntr}, nil
		case unix.EAGAIN:
			// A vCPU waiting for INIT/SIPI returns EAGAIN once the
			// in-kernel LAPIC has accepted them: enter again.
			continue
		default:
			return Exit{}, fmt.Errorf("kvm: KVM_RUN on vCPU %d: %w", v.id, errno)
		}
	}
}

func (v *VCPU) decodeExit() (Exit, error) {
	h := v.header()
	e := Exit{Reason: ExitReason(h.ExitReason)}
	u := unsafe.Pointer(&v.run[runExitOffset])
	switch e.Reason {
	case ExitIO:
		io := (*runIO)(u)
		n := uint64(io.Size) * uint64(io.Count)
		if io.DataOffset+n > uint64(len(v.run)) || n == 0 {
			return e, fmt.Errorf("kvm: vCPU %d: IO exit port %#x with data offset %#x length %d outside kvm_run (%d bytes)",
				v.id, io.Port, io.DataOffset, n, len(v.run))
		}
		e.IO = IOExit{Port: io.Port, Size: int(io.Size), Count: int(io.Count), In: io.Direction == ioDirIn,
			Data: v.run[io.DataOffset : io.DataOffset+n]}
	case ExitMMIO:
		m := (*runMMIO)(u)
		n := m.Len
		if n > 8 {
			return e, fmt.Errorf("kvm: vCPU %d: MMIO exit at %#x with length %d > 8", v.id, m.PhysAddr, n)
		}
		off := runExitOffset + unsafe.Offsetof(runMMIO{}.Data)
		e.MMIO = MMIOExit{Addr: m.PhysAddr, Write: m.IsWrite != 0, Data: v.run[off : off+uintptr(n)]}
	case ExitFailEntry:
		f := (*runFailEntry)(u)
		e.FailEntry = FailEntryExit{Reason: f.HardwareEntryFailureReason, CPU: f.CPU}
	case ExitInternalError:
		in := (*runInternal)(u)
		n := min(in.NData, uint32(len(in.Data)))
		e.Internal = InternalExit{Suberror: in.Suberror, Data: append([]uint64(nil), in.Data[:n]...)}
	case ExitSystemEvent:
		s := (*runSystemEvent)(u)
		n := min(s.NData, uint32(len(s.Data)))
		e.SystemEvent = SystemEventExit{Type: s.Type, Data: append([]uint64(nil), s.Data[:n]...)}
	}
	return e, nil
}
