package kvm

// This file mirrors the kernel's KVM ioctl structures (linux/kvm.h and
// asm/kvm.h for x86-64) field for field, with explicit padding, so that a
// pointer to one can be passed to ioctl. abi_test.go checks every size.

// Regs is struct kvm_regs: the general-purpose registers, RIP and RFLAGS.
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment.
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
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable (GDTR, IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, descriptor-table and control registers.
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

// FPU is struct kvm_fpu: x87 and SSE state.
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// MSREntry is struct kvm_msr_entry.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// msrsHeader is the fixed part of struct kvm_msrs (entries follow).
type msrsHeader struct {
	NMSRs uint32
	_     uint32
}

// msrListHeader is the fixed part of struct kvm_msr_list (indices follow).
type msrListHeader struct {
	NMSRs uint32
}

// CPUIDEntry is struct kvm_cpuid_entry2.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// cpuidHeader is the fixed part of struct kvm_cpuid2 (entries follow).
type cpuidHeader struct {
	NEnt uint32
	_    uint32
}

// LAPICState is struct kvm_lapic_state: the local APIC's 1 KiB register page.
type LAPICState struct {
	Regs [1024]byte
}

// xsaveMinSize is the size of struct kvm_xsave without its flexible tail.
const xsaveMinSize = 4096

// XCR is struct kvm_xcr.
type XCR struct {
	XCR   uint32
	_     uint32
	Value uint64
}

// XCRS is struct kvm_xcrs.
type XCRS struct {
	NrXCRS uint32
	Flags  uint32
	XCRS   [16]XCR
	_      [16]uint64
}

// mpState is struct kvm_mp_state.
type mpState struct {
	State uint32
}

// VCPUEvents is struct kvm_vcpu_events: pending exceptions, interrupts, NMIs,
// SIPI vector and SMM state.
type VCPUEvents struct {
	ExceptionInjected     uint8
	ExceptionNr           uint8
	ExceptionHasErrorCode uint8
	ExceptionPending      uint8
	ExceptionErrorCode    uint32
	InterruptInjected     uint8
	InterruptNr           uint8
	InterruptSoft         uint8
	InterruptShadow       uint8
	NMIInjected           uint8
	NMIPending            uint8
	NMIMasked             uint8
	_                     uint8
	SIPIVector            uint32
	Flags                 uint32
	SMISMM                uint8
	SMIPending            uint8
	SMIInsideNMI          uint8
	SMILatchedInit        uint8
	TripleFaultPending    uint8
	Reserved              [26]uint8
	ExceptionHasPayload   uint8
	ExceptionPayload      uint64
}

// DebugRegs is struct kvm_debugregs.
type DebugRegs struct {
	DB       [4]uint64
	DR6      uint64
	DR7      uint64
	Flags    uint64
	Reserved [9]uint64
}

// PICState is struct kvm_pic_state: one 8259.
type PICState struct {
	LastIRR                uint8
	IRR                    uint8
	IMR                    uint8
	ISR                    uint8
	PriorityAdd            uint8
	IRQBase                uint8
	ReadRegSelect          uint8
	Poll                   uint8
	SpecialMask            uint8
	InitState              uint8
	AutoEOI                uint8
	RotateOnAutoEOI        uint8
	SpecialFullyNestedMode uint8
	Init4                  uint8
	ELCR                   uint8
	ELCRMask               uint8
}

// IOAPICState is struct kvm_ioapic_state.
type IOAPICState struct {
	BaseAddress uint64
	IORegSel    uint32
	ID          uint32
	IRR         uint32
	_           uint32
	RedirTbl    [24]uint64
}

// Irqchip identifiers (KVM_IRQCHIP_*).
const (
	IRQChipPICMaster = 0
	IRQChipPICSlave  = 1
	IRQChipIOAPIC    = 2
)

// irqchip is struct kvm_irqchip; Data holds a PICState or an IOAPICState.
type irqchip struct {
	ChipID uint32
	_      uint32
	Data   [512]byte
}

// PITChannelState is struct kvm_pit_channel_state.
type PITChannelState struct {
	Count         uint32
	LatchedCount  uint16
	CountLatched  uint8
	StatusLatched uint8
	Status        uint8
	ReadState     uint8
	WriteState    uint8
	WriteLatch    uint8
	RWMode        uint8
	Mode          uint8
	BCD           uint8
	Gate          uint8
	CountLoadTime int64
}

// PITState2 is struct kvm_pit_state2.
type PITState2 struct {
	Channels [3]PITChannelState
	Flags    uint32
	_        [9]uint32
}

// pitConfig is struct kvm_pit_config.
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// pitSpeakerDummy is KVM_PIT_SPEAKER_DUMMY: port 0x61 is emulated as a dummy.
const pitSpeakerDummy = 1

// ClockData is struct kvm_clock_data.
type ClockData struct {
	Clock    uint64
	Flags    uint32
	_        uint32
	Realtime uint64
	HostTSC  uint64
	_        [4]uint32
}

// userspaceMemoryRegion is struct kvm_userspace_memory_region.
type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Memory slot flags (KVM_MEM_*).
const (
	MemLogDirtyPages = 1 << 0
	MemReadonly      = 1 << 1
)

// irqLevel is struct kvm_irq_level.
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// irqfdArgs is struct kvm_irqfd.
type irqfdArgs struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

// ioeventfdArgs is struct kvm_ioeventfd.
type ioeventfdArgs struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// ioeventfd and irqfd flags.
const (
	ioeventfdFlagDataMatch = 1 << 0
	ioeventfdFlagPIO       = 1 << 1
	ioeventfdFlagDeassign  = 1 << 2
	irqfdFlagDeassign      = 1 << 0
)

// msiArgs is struct kvm_msi.
type msiArgs struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// irqRoutingHeader is the fixed part of struct kvm_irq_routing.
type irqRoutingHeader struct {
	Nr    uint32
	Flags uint32
}

// irqRoutingEntry is struct kvm_irq_routing_entry holding an irqchip route.
type irqRoutingEntry struct {
	GSI     uint32
	Type    uint32
	Flags   uint32
	_       uint32
	IRQChip uint32
	Pin     uint32
	_       [24]uint8
}

// irqRoutingIRQChip is KVM_IRQ_ROUTING_IRQCHIP.
const irqRoutingIRQChip = 1

// runHeader is the fixed head of struct kvm_run; the exit union follows at
// runExitOffset.
type runHeader struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IFFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
}

// runExitOffset is where the exit-reason union starts in struct kvm_run.
const runExitOffset = 32

// runIO is the io member of kvm_run's exit union.
type runIO struct {
	Direction  uint8
	Size       uint8
	Port       uint16
	Count      uint32
	DataOffset uint64
}

// I/O directions (KVM_EXIT_IO_*).
const (
	ioDirIn  = 0
	ioDirOut = 1
)

// runMMIO is the mmio member of kvm_run's exit union.
type runMMIO struct {
	PhysAddr uint64
	Data     [8]uint8
	Len      uint32
	IsWrite  uint8
	_        [3]uint8
}

// runFailEntry is the fail_entry member of kvm_run's exit union.
type runFailEntry struct {
	HardwareEntryFailureReason uint64
	CPU                        uint32
	_                          uint32
}

// runInternal is the internal member of kvm_run's exit union.
type runInternal struct {
	Suberror uint32
	NData    uint32
	Data     [16]uint64
}

// runSystemEvent is the system_event member of kvm_run's exit union.
type runSystemEvent struct {
	Type  uint32
	NData uint32
	Data  [16]uint64
}
