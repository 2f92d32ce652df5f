package kvm

import (
	"fmt"
	"unsafe"
)

// VMState is the VM-wide state KVM holds in the kernel: the 8259 pair, the
// IOAPIC, the PIT and the kvmclock base. Memory and devices are saved by
// their owners.
type VMState struct {
	PICMaster PICState
	PICSlave  PICState
	IOAPIC    IOAPICState
	PIT       PITState2
	Clock     ClockData
}

func (vm *VM) getIRQChip(id uint32, dst unsafe.Pointer, size uintptr) error {
	c := irqchip{ChipID: id}
	if _, err := ioctlPtr(vm.fd, kvmGetIRQChip, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("kvm: KVM_GET_IRQCHIP %d: %w", id, err)
	}
	copy(unsafe.Slice((*byte)(dst), size), c.Data[:size])
	return nil
}

func (vm *VM) setIRQChip(id uint32, src unsafe.Pointer, size uintptr) error {
	c := irqchip{ChipID: id}
	copy(c.Data[:size], unsafe.Slice((*byte)(src), size))
	if _, err := ioctlPtr(vm.fd, kvmSetIRQChip, unsafe.Pointer(&c)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IRQCHIP %d: %w", id, err)
	}
	return nil
}

// SaveState reads the VM's irqchip, PIT and clock state. Pause every vCPU
// first.
func (vm *VM) SaveState() (VMState, error) {
	var s VMState
	if vm.fd < 0 {
		return s, ErrClosed
	}
	if err := vm.getIRQChip(IRQChipPICMaster, unsafe.Pointer(&s.PICMaster), unsafe.Sizeof(s.PICMaster)); err != nil {
		return s, err
	}
	if err := vm.getIRQChip(IRQChipPICSlave, unsafe.Pointer(&s.PICSlave), unsafe.Sizeof(s.PICSlave)); err != nil {
		return s, err
	}
	if err := vm.getIRQChip(IRQChipIOAPIC, unsafe.Pointer(&s.IOAPIC), unsafe.Sizeof(s.IOAPIC)); err != nil {
		return s, err
	}
	if _, err := ioctlPtr(vm.fd, kvmGetPIT2, unsafe.Pointer(&s.PIT)); err != nil {
		return s, fmt.Errorf("kvm: KVM_GET_PIT2: %w", err)
	}
	if _, err := ioctlPtr(vm.fd, kvmGetClock, unsafe.Pointer(&s.Clock)); err != nil {
		return s, fmt.Errorf("kvm: KVM_GET_CLOCK: %w", err)
	}
	return s, nil
}

// RestoreState writes saved state into a VM that has its irqchip and PIT and
// whose vCPUs are not running. The clock is set to the saved value: the guest
// sees no time pass while it was saved.
func (vm *VM) RestoreState(s VMState) error {
	if vm.fd < 0 {
		return ErrClosed
	}
	if err := vm.setIRQChip(IRQChipPICMaster, unsafe.Pointer(&s.PICMaster), unsafe.Sizeof(s.PICMaster)); err != nil {
		return err
	}
	if err := vm.setIRQChip(IRQChipPICSlave, unsafe.Pointer(&s.PICSlave), unsafe.Sizeof(s.PICSlave)); err != nil {
		return err
	}
	if err := vm.setIRQChip(IRQChipIOAPIC, unsafe.Pointer(&s.IOAPIC), unsafe.Sizeof(s.IOAPIC)); err != nil {
		return err
	}
	pit := s.PIT
	if _, err := ioctlPtr(vm.fd, kvmSetPIT2, unsafe.Pointer(&pit)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_PIT2: %w", err)
	}
	// Only the clock value is meaningful to KVM_SET_CLOCK here; the other
	// fields describe the saving host.
	clock := ClockData{Clock: s.Clock.Clock}
	if _, err := ioctlPtr(vm.fd, kvmSetClock, unsafe.Pointer(&clock)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_CLOCK %d: %w", clock.Clock, err)
	}
	return nil
}
