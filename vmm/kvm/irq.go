package kvm

import (
	"fmt"
	"unsafe"
)

// IOAPICPins is the number of pins of KVM's in-kernel IOAPIC.
const IOAPICPins = 24

// Route sends a GSI to one pin of an in-kernel interrupt controller.
type Route struct {
	GSI  uint32
	Chip uint32 // IRQChipPICMaster, IRQChipPICSlave or IRQChipIOAPIC
	Pin  uint32
}

// LegacyRoutes is the PC wiring that an ACPI MADT with an interrupt source
// override IRQ0 -> GSI2 describes: ISA IRQs 0-15 reach the 8259 pair, and
// the IOAPIC pin of the same number, except that IRQ0 (the PIT) reaches IOAPIC
// pin 2 and nothing reaches IOAPIC pin 2 through GSI 2. GSIs 16-23 reach
// IOAPIC pins 16-23 only.
func LegacyRoutes() []Route {
	var rs []Route
	for gsi := uint32(0); gsi < 16; gsi++ {
		chip, pin := uint32(IRQChipPICMaster), gsi
		if gsi >= 8 {
			chip, pin = IRQChipPICSlave, gsi-8
		}
		rs = append(rs, Route{GSI: gsi, Chip: chip, Pin: pin})
	}
	for gsi := uint32(0); gsi < IOAPICPins; gsi++ {
		switch gsi {
		case 0:
			rs = append(rs, Route{GSI: 0, Chip: IRQChipIOAPIC, Pin: 2})
		case 2:
		default:
			rs = append(rs, Route{GSI: gsi, Chip: IRQChipIOAPIC, Pin: gsi})
		}
	}
	return rs
}

// SetGSIRouting replaces the VM's GSI routing table (KVM_SET_GSI_ROUTING).
// Needs the irqchip.
func (vm *VM) SetGSIRouting(routes []Route) error {
	hdr := int(unsafe.Sizeof(irqRoutingHeader{}))
	ent := int(unsafe.Sizeof(irqRoutingEntry{}))
	words := make([]uint64, (hdr+len(routes)*ent+7)/8)
	base := unsafe.Pointer(&words[0])
	(*irqRoutingHeader)(base).Nr = uint32(len(routes))
	for i, r := range routes {
		*(*irqRoutingEntry)(unsafe.Add(base, hdr+i*ent)) = irqRoutingEntry{
			GSI: r.GSI, Type: irqRoutingIRQChip, IRQChip: r.Chip, Pin: r.Pin,
		}
	}
	if _, err := ioctlPtr(vm.fd, kvmSetGSIRouting, base); err != nil {
		return fmt.Errorf("kvm: KVM_SET_GSI_ROUTING (%d routes): %w", len(routes), err)
	}
	return nil
}

// SetIRQLevel drives a GSI of the in-kernel irqchip high or low
// (KVM_IRQ_LINE).
func (vm *VM) SetIRQLevel(gsi uint32, high bool) error {
	l := irqLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	if _, err := ioctlPtr(vm.fd, kvmIRQLine, unsafe.Pointer(&l)); err != nil {
		return fmt.Errorf("kvm: KVM_IRQ_LINE gsi %d level %d: %w", gsi, l.Level, err)
	}
	return nil
}

// IRQLine is one GSI of a VM's in-kernel irqchip, the form devices take an
// interrupt in (vmm/devices.IRQLine).
type IRQLine struct {
	vm  *VM
	gsi uint32
}

// IRQLine returns the line for a GSI.
func (vm *VM) IRQLine(gsi uint32) *IRQLine { return &IRQLine{vm: vm, gsi: gsi} }

// SetLevel drives the line.
func (l *IRQLine) SetLevel(high bool) error { return l.vm.SetIRQLevel(l.gsi, high) }

// GSI is the line's number.
func (l *IRQLine) GSI() uint32 { return l.gsi }

// IRQFD makes a write to eventfd fd raise gsi (KVM_IRQFD); with deassign it
// removes that binding.
func (vm *VM) IRQFD(fd int, gsi uint32, deassign bool) error {
	a := irqfdArgs{FD: uint32(fd), GSI: gsi}
	if deassign {
		a.Flags = irqfdFlagDeassign
	}
	if _, err := ioctlPtr(vm.fd, kvmIRQFD, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("kvm: KVM_IRQFD fd %d gsi %d: %w", fd, gsi, err)
	}
	return nil
}

// IOEventFD describes a guest write that KVM turns into an eventfd signal
// instead of an exit.
type IOEventFD struct {
	FD        int
	Addr      uint64 // port number when PIO, else guest-physical address
	Len       uint32 // 0 (any), 1, 2, 4 or 8 bytes
	PIO       bool
	DataMatch *uint64 // signal only when the written value equals this
}

// SetIOEventFD registers (or with deassign removes) an ioeventfd
// (KVM_IOEVENTFD).
func (vm *VM) SetIOEventFD(e IOEventFD, deassign bool) error {
	a := ioeventfdArgs{Addr: e.Addr, Len: e.Len, FD: int32(e.FD)}
	if e.PIO {
		a.Flags |= ioeventfdFlagPIO
	}
	if e.DataMatch != nil {
		a.Flags |= ioeventfdFlagDataMatch
		a.DataMatch = *e.DataMatch
	}
	if deassign {
		a.Flags |= ioeventfdFlagDeassign
	}
	if _, err := ioctlPtr(vm.fd, kvmIOEventFD, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("kvm: KVM_IOEVENTFD fd %d addr %#x len %d: %w", e.FD, e.Addr, e.Len, err)
	}
	return nil
}

// SignalMSI injects a message-signalled interrupt (KVM_SIGNAL_MSI).
func (vm *VM) SignalMSI(addr uint64, data uint32) error {
	m := msiArgs{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	if _, err := ioctlPtr(vm.fd, kvmSignalMSI, unsafe.Pointer(&m)); err != nil {
		return fmt.Errorf("kvm: KVM_SIGNAL_MSI addr %#x data %#x: %w", addr, data, err)
	}
	return nil
}
