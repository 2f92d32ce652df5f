package kvm

import "fmt"

// ExitReason is kvm_run.exit_reason (KVM_EXIT_*).
type ExitReason uint32

// Exit reasons the run loop distinguishes. ExitIntr is also what Run returns
// when KVM_RUN was interrupted by a signal or immediate_exit.
const (
	ExitUnknown       ExitReason = 0
	ExitException     ExitReason = 1
	ExitIO            ExitReason = 2
	ExitHypercall     ExitReason = 3
	ExitDebug         ExitReason = 4
	ExitHLT           ExitReason = 5
	ExitMMIO          ExitReason = 6
	ExitIRQWindowOpen ExitReason = 7
	ExitShutdown      ExitReason = 8
	ExitFailEntry     ExitReason = 9
	ExitIntr          ExitReason = 10
	ExitInternalError ExitReason = 17
	ExitSystemEvent   ExitReason = 24
)

var exitNames = map[ExitReason]string{
	ExitUnknown: "UNKNOWN", ExitException: "EXCEPTION", ExitIO: "IO", ExitHypercall: "HYPERCALL",
	ExitDebug: "DEBUG", ExitHLT: "HLT", ExitMMIO: "MMIO", ExitIRQWindowOpen: "IRQ_WINDOW_OPEN",
	ExitShutdown: "SHUTDOWN", ExitFailEntry: "FAIL_ENTRY", ExitIntr: "INTR",
	ExitInternalError: "INTERNAL_ERROR", ExitSystemEvent: "SYSTEM_EVENT",
}

func (r ExitReason) String() string {
	if n, ok := exitNames[r]; ok {
		return "KVM_EXIT_" + n
	}
	return fmt.Sprintf("KVM_EXIT(%d)", uint32(r))
}

// Exit is what one KVM_RUN returned. Only the member matching Reason is set.
// Data slices point into the vCPU's kvm_run page: they are valid until the
// next Run, and writing an IO-in or MMIO-read result into them is how the
// value reaches the guest.
type Exit struct {
	Reason      ExitReason
	IO          IOExit
	MMIO        MMIOExit
	FailEntry   FailEntryExit
	Internal    InternalExit
	SystemEvent SystemEventExit
}

// IOExit is a port access. Data holds Count items of Size bytes each (string
// instructions with a REP prefix move several at once).
type IOExit struct {
	Port  uint16
	Size  int
	Count int
	In    bool
	Data  []byte
}

// MMIOExit is an access to guest-physical memory no slot backs.
type MMIOExit struct {
	Addr  uint64
	Write bool
	Data  []byte
}

// FailEntryExit is KVM_EXIT_FAIL_ENTRY: the CPU refused to enter the guest.
type FailEntryExit struct {
	Reason uint64
	CPU    uint32
}

// InternalExit is KVM_EXIT_INTERNAL_ERROR.
type InternalExit struct {
	Suberror uint32
	Data     []uint64
}

// Internal-error suberrors (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation      = 1
	InternalErrorSimulEx        = 2
	InternalErrorDeliveryEv     = 3
	InternalErrorUnexpectedExit = 4
)

func (e InternalExit) String() string {
	name := map[uint32]string{
		InternalErrorEmulation: "emulation failure", InternalErrorSimulEx: "simultaneous exceptions",
		InternalErrorDeliveryEv: "exit during event delivery", InternalErrorUnexpectedExit: "unexpected exit reason",
	}[e.Suberror]
	if name == "" {
		name = "unknown"
	}
	return fmt.Sprintf("suberror %d (%s) data %#x", e.Suberror, name, e.Data)
}

// SystemEventExit is KVM_EXIT_SYSTEM_EVENT.
type SystemEventExit struct {
	Type uint32
	Data []uint64
}

// System event types (KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)
