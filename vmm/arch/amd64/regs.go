package amd64

// Segment is a segment register as KVM's kvm_segment describes it. Limit is
// in bytes (already scaled by G), as KVM expects. A segment with Present == 0
// is unusable (the kvm package sets KVM's unusable flag from it).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8
	Present  uint8
	DPL      uint8
	DB       uint8
	S        uint8
	L        uint8
	G        uint8
	AVL      uint8
}

// DTable is a descriptor table register (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
}

// Regs are the general purpose registers, RIP and RFLAGS (kvm_regs order).
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Sregs are the segment, descriptor table and control registers (kvm_sregs
// without the interrupt bitmap).
type Sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT Segment
	GDT, IDT                        DTable
	CR0, CR2, CR3, CR4, CR8         uint64
	EFER                            uint64
	APICBase                        uint64
}

// Control register and EFER bits used at boot.
const (
	CR0PE  = 1 << 0  // protected mode
	CR0ET  = 1 << 4  // extension type (always 1 on modern CPUs)
	CR0NE  = 1 << 5  // native x87 error reporting
	CR0PG  = 1 << 31 // paging
	CR4PAE = 1 << 5  // physical address extension

	EFERLME = 1 << 8  // long mode enable
	EFERLMA = 1 << 10 // long mode active

	// APICBaseBSP marks the bootstrap processor; APICBaseEnable enables the
	// xAPIC (IA32_APIC_BASE bits 8 and 11).
	APICBaseBSP    = 1 << 8
	APICBaseEnable = 1 << 11

	// RFLAGSReserved is bit 1 of RFLAGS, which always reads as one.
	RFLAGSReserved = 1 << 1
)

// BootRegs returns the general purpose registers of the boot vCPU for the
// 64-bit entry point of the Linux boot protocol: RIP = entry, RSI = the zero
// page, interrupts off, stack at BootStackTop.
func BootRegs(entry, zeroPage uint64) Regs {
	return Regs{
		RIP:    entry,
		RSI:    zeroPage,
		RFLAGS: RFLAGSReserved,
		RSP:    BootStackTop,
		RBP:    BootStackTop,
	}
}

// BootSregs returns the special registers of the boot vCPU: long mode with
// paging on the identity tables at PML4Addr, flat segments from the GDT at
// GDTAddr (see WriteGDT) and the xAPIC enabled as BSP. Secondary vCPUs are
// not given these: they wait for INIT/SIPI from the guest.
func BootSregs() Sregs {
	return Sregs{
		CS:       CodeSegment,
		DS:       DataSegment,
		ES:       DataSegment,
		FS:       DataSegment,
		GS:       DataSegment,
		SS:       DataSegment,
		TR:       TSSSegment,
		LDT:      Segment{Type: 2}, // not present: unusable
		GDT:      DTable{Base: GDTAddr, Limit: gdtEntries*8 - 1},
		IDT:      DTable{Base: IDTAddr, Limit: 7},
		CR0:      CR0PE | CR0ET | CR0NE | CR0PG,
		CR3:      PML4Addr,
		CR4:      CR4PAE,
		EFER:     EFERLME | EFERLMA,
		APICBase: LAPICAddr | APICBaseEnable | APICBaseBSP,
	}
}
