package amd64

// Guest physical layout and fixed platform numbers shared by the VMM, its
// devices and the firmware tables. Nothing else in smolvm hard-codes these.
const (
	// GDTAddr is where the boot GDT lives (4 descriptors, 32 bytes).
	GDTAddr = 0x500
	// IDTAddr is where the (empty) boot IDT lives.
	IDTAddr = 0x520
	// ZeroPageAddr is the boot_params ("zero page") address; RSI points here.
	ZeroPageAddr = 0x7000
	// BootStackTop is the initial RSP/RBP of the boot vCPU.
	BootStackTop = 0x8FF0
	// PML4Addr is the root of the boot identity page tables (CR3). The PDPT
	// follows at PDPTAddr and the page directories at PDAddr.
	PML4Addr = 0x9000
	// PDPTAddr is the page-directory-pointer table of the boot page tables.
	PDPTAddr = 0xA000
	// PDAddr is the first of PageDirCount page directories (2 MiB pages).
	PDAddr = 0xB000
	// PageDirCount page directories map the first 4 GiB.
	PageDirCount = 4
	// CmdlineAddr is where the kernel command line is written.
	CmdlineAddr = 0x20000
	// CmdlineMax is the room for the command line including its NUL.
	CmdlineMax = 4096
	// EBDAStart is the start of the reserved BIOS area (EBDA, VGA hole, BIOS
	// ROM, ACPI tables) that ends at HighMemStart.
	EBDAStart = 0x9FC00
	// ACPIAddr is where the ACPI tables start (the RSDP is first).
	ACPIAddr = 0xE0000
	// ACPIEnd is the end (exclusive) of the room for ACPI tables: the
	// reset vector (ResetVectorAddr, resetvector.go) follows.
	ACPIEnd = 0xFFFF0
	// HighMemStart is the start of RAM above the legacy 1 MiB area.
	HighMemStart = 0x100000
	// KernelAddr is the default load address of the protected-mode kernel.
	KernelAddr = 0x100000
	// KernelEntryOffset is the 64-bit entry point relative to the load
	// address (boot protocol: startup_64 is 0x200 past startup_32).
	KernelEntryOffset = 0x200

	// MMIOHoleStart is the start of the 32-bit hole: RAM above it moves to
	// HighRAMStart. MMIOHoleEnd is its end (exclusive).
	MMIOHoleStart = 0xC0000000
	MMIOHoleEnd   = 0x100000000
	// HighRAMStart is where RAM beyond MMIOHoleStart continues.
	HighRAMStart = 0x100000000
	// PCIMMIOStart and PCIMMIOEnd (exclusive) bound the window for 32-bit
	// PCI BARs.
	PCIMMIOStart = 0xC0000000
	PCIMMIOEnd   = 0xFC000000
	// IOAPICAddr and LAPICAddr are the interrupt controllers' MMIO bases.
	IOAPICAddr = 0xFEC00000
	LAPICAddr  = 0xFEE00000
	// APICPageSize is the size of one APIC MMIO page.
	APICPageSize = 0x1000
	// IOAPICPins is the number of KVM IOAPIC inputs (GSI 0..23).
	IOAPICPins = 24

	// ACPISleepControlPort, ACPISleepStatusPort and ACPIResetPort are the
	// hardware-reduced ACPI registers (1 byte each, I/O space).
	ACPISleepControlPort = 0x600
	ACPISleepStatusPort  = 0x601
	ACPIResetPort        = 0x602
	// ACPIResetValue written to ACPIResetPort resets the machine.
	ACPIResetValue = 0x01
	// ACPIS5SleepType is SLP_TYP of \_S5 (soft off). A guest powers off by
	// writing (ACPIS5SleepType<<2)|ACPISleepEnable to ACPISleepControlPort.
	ACPIS5SleepType = 5
	// ACPISleepEnable is the SLP_EN bit of the sleep control register.
	ACPISleepEnable = 1 << 5
	// SCIIRQ is the ACPI system control interrupt (level, active high).
	SCIIRQ = 9

	// VMGenIDAddr is the page holding the 16-byte VM generation ID (at its
	// start): VMM memory of its own in the 32-bit hole, above the PCI BAR
	// window and below the IOAPIC, reserved in the e820 map. VMGenIDIRQ is
	// the ISA IRQ (edge, active high) of the ACPI Generic Event Device
	// that announces a new ID.
	VMGenIDAddr = 0xFEBFF000
	VMGenIDIRQ  = 5

	// COM1Port and COM1IRQ locate the 8250 UART.
	COM1Port = 0x3F8
	COM1IRQ  = 4
	// I8042DataPort and I8042CommandPort locate the i8042 controller.
	I8042DataPort    = 0x60
	I8042CommandPort = 0x64
	// PCIConfigPort is the first of PCIConfigPortCount legacy configuration
	// mechanism #1 ports (address 0xCF8, data 0xCFC-0xCFF).
	PCIConfigPort      = 0xCF8
	PCIConfigPortCount = 8
	// PCIIntxGSIBase is the first of PCIIntxGSICount GSIs that PCI INTx
	// pins route to (level triggered, active low): slot s pin p (0=INTA)
	// uses GSI PCIIntxGSIBase + (s+p)%PCIIntxGSICount. See PCIIntxGSI.
	PCIIntxGSIBase  = 16
	PCIIntxGSICount = 8
)

// MaxCPUs is the largest vCPU count the boot tables describe (xAPIC ids are
// 8 bits, 0xFF is broadcast, and the IOAPIC takes id = number of vCPUs).
const MaxCPUs = 254

// IOAPICID returns the IOAPIC's id for a machine with ncpus vCPUs (LAPIC ids
// are 0..ncpus-1).
func IOAPICID(ncpus int) uint8 { return uint8(ncpus) }

// PCIIntxGSI returns the GSI that INTx pin (0 = INTA .. 3 = INTD) of PCI
// device slot (1..31, bus 0) is routed to, as the DSDT's _PRT describes.
func PCIIntxGSI(slot, pin int) uint32 {
	return PCIIntxGSIBase + uint32((slot+pin)%PCIIntxGSICount)
}

// ISAGSI returns the GSI of legacy ISA IRQ irq: 1:1 except IRQ0 -> GSI2
// (the MADT's interrupt source override).
func ISAGSI(irq uint8) uint32 {
	if irq == 0 {
		return 2
	}
	return uint32(irq)
}

// MemRegion is a range of guest physical RAM.
type MemRegion struct {
	GuestAddr uint64
	Size      uint64
}

// End returns the first address past the region.
func (r MemRegion) End() uint64 { return r.GuestAddr + r.Size }

// RAMRegions splits memSize bytes of guest RAM into the regions the guest
// sees: [0, min(memSize, 3 GiB)) and, when memSize exceeds 3 GiB, the rest
// from 4 GiB. The first region is the "low RAM" that the functions of this
// package take as a []byte.
func RAMRegions(memSize uint64) []MemRegion {
	if memSize <= MMIOHoleStart {
		return []MemRegion{{0, memSize}}
	}
	return []MemRegion{{0, MMIOHoleStart}, {HighRAMStart, memSize - MMIOHoleStart}}
}

// LowRAMSize is the size of the first region of RAMRegions(memSize).
func LowRAMSize(memSize uint64) uint64 { return min(memSize, MMIOHoleStart) }
