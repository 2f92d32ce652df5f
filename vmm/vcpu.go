package vmm

import (
	"fmt"
	"runtime"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// x87 control word and MXCSR after FNINIT / reset: all exceptions masked,
// round to nearest, 64-bit precision.
const (
	fpuControlWord = 0x37F
	mxcsrDefault   = 0x1F80
)

// createVCPUs creates every vCPU with its own CPUID (APIC ID), boot MSRs and
// LAPIC virtual-wire LVTs. vCPU 0 gets the 64-bit boot registers; the others
// wait in KVM_MP_STATE_UNINITIALIZED for the guest's INIT/SIPI, which the
// in-kernel LAPIC handles.
func (m *Machine) createVCPUs() error {
	supported, err := m.sys.SupportedCPUID()
	if err != nil {
		return err
	}
	n := m.cfg.CPUs
	for i := 0; i < n; i++ {
		v, err := m.vm.CreateVCPU(i)
		if err != nil {
			return err
		}
		m.vcpus = append(m.vcpus, v)
		if err := v.SetCPUID(kvmCPUID(amd64.FilterCPUID(amd64CPUID(supported), i, n))); err != nil {
			return err
		}
		if err := v.SetMSRs(kvmMSRs(amd64.BootMSRs())); err != nil {
			return err
		}
		lapic, err := v.LAPIC()
		if err != nil {
			return err
		}
		if err := amd64.SetupLAPIC(lapic.Regs[:]); err != nil {
			return fmt.Errorf("vmm: vCPU %d: %w", i, err)
		}
		if err := v.SetLAPIC(lapic); err != nil {
			return err
		}
		if err := v.SetFPU(kvm.FPU{FCW: fpuControlWord, MXCSR: mxcsrDefault}); err != nil {
			return err
		}
		if i > 0 {
			if err := v.SetMPState(kvm.MPStateUninitialized); err != nil {
				return err
			}
			continue
		}
		if err := v.SetSregs(kvmSregs(amd64.BootSregs())); err != nil {
			return err
		}
		if err := v.SetRegs(kvmRegs(amd64.BootRegs(m.boot.Entry, m.boot.ZeroPage))); err != nil {
			return err
		}
	}
	return nil
}

// runVCPU is the body of one vCPU goroutine. It locks itself to its OS
// thread for good: when it returns the thread exits with it, so a late Kick
// can never signal a thread that runs something else.
func (m *Machine) runVCPU(v *kvm.VCPU) {
	runtime.LockOSThread()
	v.Bind()
	for !m.stop.stopped() {
		if m.Paused() {
			// Finish the last exit's IO or MMIO access without running
			// guest code, so that a paused vCPU's state is consistent,
			// then wait while paused (control.go). immediate_exit is
			// cleared before the loop checks for a stop or a new pause,
			// whose kick sets it again.
			v.SetImmediateExit(true)
			if _, err := v.Run(); err != nil {
				m.stop.request(StopError, fmt.Errorf("%w: vCPU %d: %w", ErrGuest, v.ID(), err))
				return
			}
			m.pause.park(v, m.stop.done)
			v.SetImmediateExit(false)
			continue
		}
		exit, err := v.Run()
		if err != nil {
			m.stop.request(StopError, fmt.Errorf("%w: vCPU %d: %w", ErrGuest, v.ID(), err))
			return
		}
		if err := m.handleExit(v, exit); err != nil {
			m.stop.request(StopError, err)
			return
		}
	}
	// Complete an IO or MMIO access the last exit left half done, without
	// running guest code, so that the vCPU's state is consistent.
	v.SetImmediateExit(true)
	_, _ = v.Run()
}

// handleExit serves one exit; a non-nil error stops the machine.
func (m *Machine) handleExit(v *kvm.VCPU, e kvm.Exit) error {
	switch e.Reason {
	case kvm.ExitIntr:
		return nil
	case kvm.ExitIO:
		io := e.IO
		for i := 0; i < io.Count; i++ {
			d := io.Data[i*io.Size : (i+1)*io.Size]
			if io.In {
				m.bus.PortIn(io.Port, d)
			} else {
				m.bus.PortOut(io.Port, d)
			}
		}
		return nil
	case kvm.ExitMMIO:
		if e.MMIO.Write {
			m.bus.MMIOWrite(e.MMIO.Addr, e.MMIO.Data)
		} else {
			m.bus.MMIORead(e.MMIO.Addr, e.MMIO.Data)
		}
		return nil
	case kvm.ExitSystemEvent:
		switch e.SystemEvent.Type {
		case kvm.SystemEventShutdown:
			m.stop.request(StopPowerOff, nil)
			return nil
		case kvm.SystemEventReset:
			m.stop.request(StopReboot, nil)
			return nil
		}
		return m.exitError(v, e, ErrGuest, fmt.Sprintf("system event type %d data %#x", e.SystemEvent.Type, e.SystemEvent.Data))
	case kvm.ExitShutdown:
		return m.exitError(v, e, ErrTripleFault, shutdownDetail(v))
	case kvm.ExitInternalError:
		detail := e.Internal.String()
		if e.Internal.Suberror == kvm.InternalErrorEmulation && kvm.Module() == "kvm_pvm" {
			detail += " (this host's /dev/kvm is kvm_pvm, which runs only PVM-enabled guest kernels: a stock kernel needs hardware KVM, see docs/LAB.md)"
		}
		return m.exitError(v, e, ErrGuest, detail)
	case kvm.ExitFailEntry:
		return m.exitError(v, e, ErrGuest, fmt.Sprintf("hardware entry failure reason %#x on host CPU %d", e.FailEntry.Reason, e.FailEntry.CPU))
	}
	return m.exitError(v, e, ErrGuest, "unexpected exit")
}

// shutdownDetail explains a triple fault's RIP when it means nothing: on
// AMD, KVM reinitializes the vCPU at a shutdown intercept, so the vCPU
// reads as at the reset vector (CS base 0xffff0000, RIP 0xfff0) and the
// instruction that faulted is lost.
func shutdownDetail(v *kvm.VCPU) string {
	regs, err := v.Regs()
	if err != nil || regs.RIP != resetRIP {
		return ""
	}
	if sregs, err := v.Sregs(); err != nil || sregs.CS.Base != resetCSBase {
		return ""
	}
	return "the vCPU reads as reset (KVM reinitializes it at a shutdown on AMD): where it faulted is not known"
}

// The x86 reset state's code segment base and instruction pointer.
const (
	resetCSBase = 0xffff0000
	resetRIP    = 0xfff0
)

func (m *Machine) exitError(v *kvm.VCPU, e kvm.Exit, kind error, detail string) error {
	ee := &ExitError{VCPU: v.ID(), Reason: e.Reason, Detail: detail, kind: kind}
	if regs, err := v.Regs(); err == nil {
		ee.RIP = regs.RIP
	}
	return ee
}

// kickAll makes every vCPU leave KVM_RUN.
func (m *Machine) kickAll() {
	for _, v := range m.vcpus {
		v.Kick()
	}
}
