package kvm

import "fmt"

// VCPUState is everything KVM holds for one vCPU that a snapshot must carry.
// Save it only while the vCPU is out of KVM_RUN with no IO or MMIO exit half
// done (see VCPU.Run).
type VCPUState struct {
	ID        int
	CPUID     []CPUIDEntry
	TSCKHz    uint32
	MPState   uint32
	Regs      Regs
	Sregs     Sregs
	FPU       FPU
	XSAVE     []byte
	XCRS      XCRS
	DebugRegs DebugRegs
	LAPIC     LAPICState
	MSRs      []MSREntry
	Events    VCPUEvents
}

// SaveState reads the vCPU's state; msrIndices is normally the system's
// MSRIndexList.
func (v *VCPU) SaveState(msrIndices []uint32) (VCPUState, error) {
	s := VCPUState{ID: v.id}
	var err error
	wrap := func(err error) error { return fmt.Errorf("save vCPU %d: %w", v.id, err) }
	// KVM_GET_MP_STATE first: it makes the local APIC accept pending INIT or
	// SIPI events, which the other pieces must then reflect.
	if s.MPState, err = v.MPState(); err != nil {
		return s, wrap(err)
	}
	if s.CPUID, err = v.CPUID(); err != nil {
		return s, wrap(err)
	}
	if s.TSCKHz, err = v.TSCKHz(); err != nil {
		return s, wrap(err)
	}
	if s.Regs, err = v.Regs(); err != nil {
		return s, wrap(err)
	}
	if s.Sregs, err = v.Sregs(); err != nil {
		return s, wrap(err)
	}
	if s.FPU, err = v.FPU(); err != nil {
		return s, wrap(err)
	}
	if s.XSAVE, err = v.XSAVE(); err != nil {
		return s, wrap(err)
	}
	if s.XCRS, err = v.XCRS(); err != nil {
		return s, wrap(err)
	}
	if s.DebugRegs, err = v.DebugRegs(); err != nil {
		return s, wrap(err)
	}
	if s.LAPIC, err = v.LAPIC(); err != nil {
		return s, wrap(err)
	}
	if s.MSRs, err = v.MSRs(msrIndices); err != nil {
		return s, wrap(err)
	}
	if s.Events, err = v.Events(); err != nil {
		return s, wrap(err)
	}
	return s, nil
}

// RestoreState writes saved state into a freshly created vCPU of a VM that
// already has its irqchip. The order matters: CPUID before anything that
// depends on features, sregs (APIC base) before the LAPIC page, MSRs (TSC)
// after the LAPIC, events last.
func (v *VCPU) RestoreState(s VCPUState) error {
	if s.ID != v.id {
		return fmt.Errorf("%w: state of vCPU %d restored into vCPU %d", ErrState, s.ID, v.id)
	}
	wrap := func(err error) error { return fmt.Errorf("restore vCPU %d: %w", v.id, err) }
	if err := v.SetCPUID(s.CPUID); err != nil {
		return wrap(err)
	}
	if s.TSCKHz != 0 {
		if cur, err := v.TSCKHz(); err != nil || cur != s.TSCKHz {
			if err := v.SetTSCKHz(s.TSCKHz); err != nil {
				return wrap(err)
			}
		}
	}
	if err := v.SetMPState(s.MPState); err != nil {
		return wrap(err)
	}
	if err := v.SetRegs(s.Regs); err != nil {
		return wrap(err)
	}
	if err := v.SetSregs(s.Sregs); err != nil {
		return wrap(err)
	}
	if err := v.SetFPU(s.FPU); err != nil {
		return wrap(err)
	}
	if len(s.XSAVE) > 0 {
		if err := v.SetXSAVE(s.XSAVE); err != nil {
			return wrap(err)
		}
	}
	if err := v.SetXCRS(s.XCRS); err != nil {
		return wrap(err)
	}
	if err := v.SetDebugRegs(s.DebugRegs); err != nil {
		return wrap(err)
	}
	if err := v.SetLAPIC(s.LAPIC); err != nil {
		return wrap(err)
	}
	if err := v.SetMSRs(s.MSRs); err != nil {
		return wrap(err)
	}
	if err := v.SetEvents(s.Events); err != nil {
		return wrap(err)
	}
	return nil
}
