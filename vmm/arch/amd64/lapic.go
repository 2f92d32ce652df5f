package amd64

import (
	"encoding/binary"
	"fmt"
)

// Local APIC register page, as in kvm_lapic_state.regs: the xAPIC MMIO
// registers at their offsets, 32 bits each.
const (
	LAPICRegsSize = 0x400
	LAPICLVTLINT0 = 0x350
	LAPICLVTLINT1 = 0x360

	lvtDeliveryModeShift = 8
	lvtDeliveryModeMask  = 7 << lvtDeliveryModeShift
	// APICModeNMI and APICModeExtINT are LVT delivery modes.
	APICModeNMI    = 4
	APICModeExtINT = 7
)

// SetupLAPIC sets the delivery mode of LVT LINT0 to ExtINT (the legacy PIC's
// output) and LINT1 to NMI in regs, a vCPU's LAPIC register page (kvm_lapic_state.regs,
// LAPICRegsSize bytes), keeping the other bits (mask, trigger, polarity) as
// they are. This is the virtual-wire wiring the MADT's LAPIC NMI entry
// describes and that Linux expects of a PC.
func SetupLAPIC(regs []byte) error {
	if len(regs) < LAPICRegsSize {
		return fmt.Errorf("amd64: LAPIC register page is %d bytes, want %d: %w", len(regs), LAPICRegsSize, ErrInvalidConfig)
	}
	setLVTMode(regs, LAPICLVTLINT0, APICModeExtINT)
	setLVTMode(regs, LAPICLVTLINT1, APICModeNMI)
	return nil
}

func setLVTMode(regs []byte, off int, mode uint32) {
	v := binary.LittleEndian.Uint32(regs[off:])
	v = v&^lvtDeliveryModeMask | mode<<lvtDeliveryModeShift
	binary.LittleEndian.PutUint32(regs[off:], v)
}
