package acpi

import "fmt"

// Config is the machine the tables describe.
type Config struct {
	// CPUs is the number of vCPUs; LAPIC ids and ACPI processor UIDs are
	// 0..CPUs-1.
	CPUs int
	// LAPICAddr and IOAPICAddr are the interrupt controllers' MMIO bases;
	// IOAPICID is the IOAPIC's id (must differ from every LAPIC id).
	LAPICAddr  uint32
	IOAPICAddr uint32
	IOAPICID   uint8
	// SCI is the ACPI system control interrupt (an ISA IRQ, routed level
	// triggered, active high).
	SCI uint8
	// SleepControlPort, SleepStatusPort and ResetPort are the 1-byte
	// hardware-reduced registers in I/O space; ResetValue resets.
	SleepControlPort uint16
	SleepStatusPort  uint16
	ResetPort        uint16
	ResetValue       uint8
	// S5SleepType is SLP_TYP for soft-off (\_S5).
	S5SleepType uint8
	// PCIConfigPort is the first of the 8 legacy PCI configuration ports
	// (0xCF8); the bridge's I/O windows are the rest of the 16-bit space.
	PCIConfigPort uint16
	// PCIMMIOBase and PCIMMIOEnd (exclusive) bound the 32-bit BAR window.
	PCIMMIOBase uint32
	PCIMMIOEnd  uint64
	// PCIIntxGSIBase is the first of 8 GSIs for INTx: device slot s (1-31)
	// pin p (0 = INTA) routes to PCIIntxGSIBase + (s+p)%8, level
	// triggered, active low.
	PCIIntxGSIBase uint32
	// COM1Port and COM1IRQ describe a 16550 UART in the DSDT; COM1Port 0
	// leaves it out.
	COM1Port uint16
	COM1IRQ  uint8
	// I8042 sets the FADT's "8042 present" boot flag.
	I8042 bool
	// VMGenIDAddr, when not 0, is the guest-physical address of the
	// 16-byte VM generation ID (8-byte aligned, within one page): the
	// DSDT then has \_SB.VGEN and a Generic Event Device \_SB.GED0 whose
	// edge-triggered, active-high interrupt VMGenIDGSI notifies it
	// (vmgenid.go).
	VMGenIDAddr uint64
	VMGenIDGSI  uint32
}

// maxCPUs: xAPIC ids are 8 bits and 0xFF is the broadcast id.
const maxCPUs = 0xFF

func (c *Config) validate() error {
	switch {
	case c.CPUs < 1 || c.CPUs >= maxCPUs:
		return fmt.Errorf("acpi: %d vCPUs, want 1..%d: %w", c.CPUs, maxCPUs-1, ErrInvalidConfig)
	case int(c.IOAPICID) < c.CPUs:
		return fmt.Errorf("acpi: IOAPIC id %d collides with a LAPIC id (0..%d): %w", c.IOAPICID, c.CPUs-1, ErrInvalidConfig)
	case c.SCI > 15 || (c.COM1Port != 0 && c.COM1IRQ > 15):
		return fmt.Errorf("acpi: SCI %d / COM1 IRQ %d must be ISA IRQs (0..15): %w", c.SCI, c.COM1IRQ, ErrInvalidConfig)
	case c.PCIMMIOEnd <= uint64(c.PCIMMIOBase) || c.PCIMMIOEnd > 1<<32:
		return fmt.Errorf("acpi: PCI MMIO window %#x..%#x is empty or above 4 GiB: %w", c.PCIMMIOBase, c.PCIMMIOEnd, ErrInvalidConfig)
	case c.PCIConfigPort < 1 || c.PCIConfigPort > 0xFFF7:
		return fmt.Errorf("acpi: PCI config port %#x leaves no I/O window below it: %w", c.PCIConfigPort, ErrInvalidConfig)
	case c.PCIIntxGSIBase+8 > 0xFF:
		return fmt.Errorf("acpi: PCI INTx GSIs %d..%d do not fit a byte: %w", c.PCIIntxGSIBase, c.PCIIntxGSIBase+7, ErrInvalidConfig)
	case c.VMGenIDAddr != 0 && (c.VMGenIDAddr%8 != 0 || c.VMGenIDAddr%4096+VMGenIDSize > 4096):
		return fmt.Errorf("acpi: VM generation ID at %#x must be 8-byte aligned within one page: %w", c.VMGenIDAddr, ErrInvalidConfig)
	case c.VMGenIDAddr != 0 && c.VMGenIDGSI >= c.PCIIntxGSIBase && c.VMGenIDGSI < c.PCIIntxGSIBase+8:
		return fmt.Errorf("acpi: VM generation ID GSI %d is a PCI INTx GSI (%d..%d): %w", c.VMGenIDGSI, c.PCIIntxGSIBase, c.PCIIntxGSIBase+7, ErrInvalidConfig)
	case c.VMGenIDAddr != 0 && (c.VMGenIDGSI == uint32(c.SCI) || (c.COM1Port != 0 && c.VMGenIDGSI == uint32(c.COM1IRQ)) || c.VMGenIDGSI < 3):
		return fmt.Errorf("acpi: VM generation ID GSI %d is taken (GSI 0-2: timer, keyboard; SCI %d; COM1 IRQ %d): %w", c.VMGenIDGSI, c.SCI, c.COM1IRQ, ErrInvalidConfig)
	}
	return nil
}
