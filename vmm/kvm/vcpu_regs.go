package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// get and set wrap the fixed-size vCPU ioctls with a uniform error.
func (v *VCPU) get(req uintptr, p unsafe.Pointer, what string) error {
	if v.fd < 0 {
		return ErrClosed
	}
	if _, err := ioctlPtr(v.fd, req, p); err != nil {
		return fmt.Errorf("kvm: vCPU %d: get %s: %w", v.id, what, err)
	}
	return nil
}

func (v *VCPU) set(req uintptr, p unsafe.Pointer, what string) error {
	if v.fd < 0 {
		return ErrClosed
	}
	if _, err := ioctlPtr(v.fd, req, p); err != nil {
		return fmt.Errorf("kvm: vCPU %d: set %s: %w", v.id, what, err)
	}
	return nil
}

// Regs reads the general-purpose registers (KVM_GET_REGS).
func (v *VCPU) Regs() (Regs, error) {
	var r Regs
	return r, v.get(kvmGetRegs, unsafe.Pointer(&r), "regs")
}

// SetRegs writes the general-purpose registers (KVM_SET_REGS).
func (v *VCPU) SetRegs(r Regs) error { return v.set(kvmSetRegs, unsafe.Pointer(&r), "regs") }

// Sregs reads the special registers (KVM_GET_SREGS).
func (v *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	return s, v.get(kvmGetSregs, unsafe.Pointer(&s), "sregs")
}

// SetSregs writes the special registers (KVM_SET_SREGS).
func (v *VCPU) SetSregs(s Sregs) error { return v.set(kvmSetSregs, unsafe.Pointer(&s), "sregs") }

// FPU reads the x87/SSE state (KVM_GET_FPU).
func (v *VCPU) FPU() (FPU, error) {
	var f FPU
	return f, v.get(kvmGetFPU, unsafe.Pointer(&f), "fpu")
}

// SetFPU writes the x87/SSE state (KVM_SET_FPU).
func (v *VCPU) SetFPU(f FPU) error { return v.set(kvmSetFPU, unsafe.Pointer(&f), "fpu") }

// LAPIC reads the local APIC register page (KVM_GET_LAPIC).
func (v *VCPU) LAPIC() (LAPICState, error) {
	var l LAPICState
	return l, v.get(kvmGetLAPIC, unsafe.Pointer(&l), "lapic")
}

// SetLAPIC writes the local APIC register page (KVM_SET_LAPIC).
func (v *VCPU) SetLAPIC(l LAPICState) error { return v.set(kvmSetLAPIC, unsafe.Pointer(&l), "lapic") }

// MP states (KVM_MP_STATE_*).
const (
	MPStateRunnable      = 0
	MPStateUninitialized = 1
	MPStateInitReceived  = 2
	MPStateHalted        = 3
	MPStateSIPIReceived  = 4
)

// MPState reads the multiprocessing state (KVM_GET_MP_STATE).
func (v *VCPU) MPState() (uint32, error) {
	var s mpState
	return s.State, v.get(kvmGetMPState, unsafe.Pointer(&s), "mp_state")
}

// SetMPState writes the multiprocessing state (KVM_SET_MP_STATE).
func (v *VCPU) SetMPState(state uint32) error {
	s := mpState{State: state}
	return v.set(kvmSetMPState, unsafe.Pointer(&s), "mp_state")
}

// Events reads pending exceptions, interrupts and NMIs (KVM_GET_VCPU_EVENTS).
func (v *VCPU) Events() (VCPUEvents, error) {
	var e VCPUEvents
	return e, v.get(kvmGetVCPUEvents, unsafe.Pointer(&e), "vcpu_events")
}

// vcpuEventsValid are the KVM_VCPUEVENT_VALID_* flags a restore sets: NMI
// pending, SIPI vector, interrupt shadow and SMM state are all meaningful in
// a saved VCPUEvents.
const vcpuEventsValid = 0x1 | 0x2 | 0x4 | 0x8

// SetEvents writes pending exceptions, interrupts and NMIs
// (KVM_SET_VCPU_EVENTS).
func (v *VCPU) SetEvents(e VCPUEvents) error {
	e.Flags |= vcpuEventsValid
	return v.set(kvmSetVCPUEvents, unsafe.Pointer(&e), "vcpu_events")
}

// DebugRegs reads DR0-3, DR6, DR7 (KVM_GET_DEBUGREGS).
func (v *VCPU) DebugRegs() (DebugRegs, error) {
	var d DebugRegs
	return d, v.get(kvmGetDebugRegs, unsafe.Pointer(&d), "debugregs")
}

// SetDebugRegs writes DR0-3, DR6, DR7 (KVM_SET_DEBUGREGS).
func (v *VCPU) SetDebugRegs(d DebugRegs) error {
	return v.set(kvmSetDebugRegs, unsafe.Pointer(&d), "debugregs")
}

// XCRS reads the extended control registers (KVM_GET_XCRS).
func (v *VCPU) XCRS() (XCRS, error) {
	var x XCRS
	return x, v.get(kvmGetXCRS, unsafe.Pointer(&x), "xcrs")
}

// SetXCRS writes the extended control registers (KVM_SET_XCRS).
func (v *VCPU) SetXCRS(x XCRS) error { return v.set(kvmSetXCRS, unsafe.Pointer(&x), "xcrs") }

// xsaveSize is the size of this host's XSAVE area for KVM: 4096 unless
// KVM_CAP_XSAVE2 reports more (e.g. AMX), in which case KVM_GET_XSAVE2 is
// needed.
func (v *VCPU) xsaveSize() (int, bool, error) {
	n, err := v.vm.checkExtension(CapXSAVE2)
	if err != nil || n <= xsaveMinSize {
		return xsaveMinSize, false, nil
	}
	return n, true, nil
}

// XSAVE reads the XSAVE area (KVM_GET_XSAVE, or KVM_GET_XSAVE2 when larger
// than 4 KiB).
func (v *VCPU) XSAVE() ([]byte, error) {
	n, big, err := v.xsaveSize()
	if err != nil {
		return nil, err
	}
	words := make([]uint32, (n+3)/4)
	req := kvmGetXSAVE
	if big {
		req = kvmGetXSAVE2
	}
	if err := v.get(req, unsafe.Pointer(&words[0]), "xsave"); err != nil {
		return nil, err
	}
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n)...), nil
}

// SetXSAVE writes the XSAVE area (KVM_SET_XSAVE). The buffer must be as large
// as XSAVE returns on this host.
func (v *VCPU) SetXSAVE(b []byte) error {
	n, _, err := v.xsaveSize()
	if err != nil {
		return err
	}
	if len(b) != n {
		return fmt.Errorf("%w: vCPU %d: xsave area is %d bytes, this host wants %d", ErrState, v.id, len(b), n)
	}
	words := make([]uint32, (n+3)/4)
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), n), b)
	return v.set(kvmSetXSAVE, unsafe.Pointer(&words[0]), "xsave")
}

// TSCKHz reads the vCPU's TSC frequency (KVM_GET_TSC_KHZ).
func (v *VCPU) TSCKHz() (uint32, error) {
	if v.fd < 0 {
		return 0, ErrClosed
	}
	n, err := ioctl(v.fd, kvmGetTSCKHz, 0)
	if err != nil {
		return 0, fmt.Errorf("kvm: vCPU %d: KVM_GET_TSC_KHZ: %w", v.id, err)
	}
	return uint32(n), nil
}

// SetTSCKHz sets the vCPU's TSC frequency (KVM_SET_TSC_KHZ).
func (v *VCPU) SetTSCKHz(khz uint32) error {
	if v.fd < 0 {
		return ErrClosed
	}
	if _, err := ioctl(v.fd, kvmSetTSCKHz, uintptr(khz)); err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_TSC_KHZ %d: %w", v.id, khz, err)
	}
	return nil
}

// SetCPUID sets the CPUID leaves the guest sees (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID(entries []CPUIDEntry) error {
	buf := cpuidBufFrom(entries)
	return v.set(kvmSetCPUID2, unsafe.Pointer(&buf[0]), fmt.Sprintf("cpuid (%d entries)", len(entries)))
}

// CPUID reads back the CPUID leaves set on the vCPU (KVM_GET_CPUID2).
func (v *VCPU) CPUID() ([]CPUIDEntry, error) {
	for n := 64; n <= maxCPUIDEntries; n *= 2 {
		buf := newCPUIDBuf(n)
		_, err := ioctlPtr(v.fd, kvmGetCPUID2, unsafe.Pointer(&buf[0]))
		if isErrno(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_CPUID2: %w", v.id, err)
		}
		return cpuidEntries(buf), nil
	}
	return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_CPUID2: more than %d entries", v.id, maxCPUIDEntries)
}

// msrBuf lays out struct kvm_msrs for entries.
func msrBuf(entries []MSREntry) []uint64 {
	words := make([]uint64, 1+2*len(entries)) // 8-byte header, 16-byte entries
	base := unsafe.Pointer(&words[0])
	(*msrsHeader)(base).NMSRs = uint32(len(entries))
	for i, e := range entries {
		*(*MSREntry)(unsafe.Add(base, 8+16*i)) = e
	}
	return words
}

func msrEntries(words []uint64, n int) []MSREntry {
	base := unsafe.Pointer(&words[0])
	out := make([]MSREntry, n)
	for i := range out {
		out[i] = *(*MSREntry)(unsafe.Add(base, 8+16*i))
	}
	return out
}

// MSRs reads the MSRs whose indices are given (KVM_GET_MSRS). MSRs this vCPU
// cannot read are left out of the result rather than failing the call.
func (v *VCPU) MSRs(indices []uint32) ([]MSREntry, error) {
	if v.fd < 0 {
		return nil, ErrClosed
	}
	var out []MSREntry
	for len(indices) > 0 {
		entries := make([]MSREntry, len(indices))
		for i, idx := range indices {
			entries[i].Index = idx
		}
		words := msrBuf(entries)
		n, err := ioctlPtr(v.fd, kvmGetMSRs, unsafe.Pointer(&words[0]))
		if err != nil {
			return nil, fmt.Errorf("kvm: vCPU %d: KVM_GET_MSRS (%d MSRs from %#x): %w", v.id, len(indices), indices[0], err)
		}
		out = append(out, msrEntries(words, int(n))...)
		// KVM stops at the first MSR it cannot read: skip it and go on.
		if int(n) >= len(indices) {
			break
		}
		indices = indices[n+1:]
	}
	return out, nil
}

// SetMSRs writes MSRs (KVM_SET_MSRS); it fails naming the first MSR KVM
// refused.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	if v.fd < 0 {
		return ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	words := msrBuf(entries)
	n, err := ioctlPtr(v.fd, kvmSetMSRs, unsafe.Pointer(&words[0]))
	if err != nil {
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS (%d MSRs): %w", v.id, len(entries), err)
	}
	if int(n) < len(entries) {
		e := entries[n]
		return fmt.Errorf("kvm: vCPU %d: KVM_SET_MSRS refused MSR %#x = %#x (%d of %d set)", v.id, e.Index, e.Data, n, len(entries))
	}
	return nil
}
