package vmm

import (
	"fmt"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/devices"
	"github.com/smolvm/smolvm/vmm/devices/acpi"
	"github.com/smolvm/smolvm/vmm/devices/i8042"
	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/serial"
)

// createDevices puts the legacy devices on the bus at the fixed layout's
// ports: COM1 (its IRQ on the in-kernel irqchip), the i8042 (reset), the
// ACPI sleep/reset registers (poweroff, reboot) and the PCI host bridge.
func (m *Machine) createDevices() error {
	m.bus = devices.NewBus()
	var err error
	if m.serial, err = serial.New(serial.Config{
		Base: amd64.COM1Port, IRQ: m.vm.IRQLine(amd64.ISAGSI(amd64.COM1IRQ)), Out: m.cfg.Console,
	}); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.serial.Register(m.bus); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if m.i8042, err = i8042.New(amd64.I8042DataPort, amd64.I8042CommandPort, func() { m.stop.request(StopReboot, nil) }); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.i8042.Register(m.bus); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	m.acpi, err = acpi.New(acpi.Config{
		SleepControlPort: amd64.ACPISleepControlPort,
		SleepStatusPort:  amd64.ACPISleepStatusPort,
		ResetPort:        amd64.ACPIResetPort,
		ResetValue:       amd64.ACPIResetValue,
		S5SleepType:      amd64.ACPIS5SleepType,
		PowerOff:         func() { m.stop.request(StopPowerOff, nil) },
		Reset:            func() { m.stop.request(StopReboot, nil) },
	})
	if err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if err := m.acpi.Register(m.bus); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	pciCfg := pci.DefaultConfig(m.bus)
	pciCfg.ConfigPort = amd64.PCIConfigPort
	pciCfg.MMIOBase, pciCfg.MMIOSize = amd64.PCIMMIOStart, amd64.PCIMMIOEnd-amd64.PCIMMIOStart
	if m.pci, err = pci.NewHost(pciCfg); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	return nil
}
