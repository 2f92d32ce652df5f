package vmm

import (
	"errors"
	"fmt"

	"github.com/smolvm/smolvm/vmm/kvm"
)

// Sentinel errors, for errors.Is.
var (
	// ErrConfig: the machine configuration is unusable (missing file, bad
	// sizes); the message names the field.
	ErrConfig = errors.New("vmm: bad configuration")
	// ErrTripleFault: the guest triple-faulted (KVM_EXIT_SHUTDOWN without a
	// reset request).
	ErrTripleFault = errors.New("vmm: guest triple fault")
	// ErrGuest: the guest stopped in a way KVM could not handle (internal
	// error, failed entry, unexpected exit).
	ErrGuest = errors.New("vmm: guest failure")
	// ErrStuck: a vCPU did not leave KVM_RUN within the stop timeout.
	ErrStuck = errors.New("vmm: vCPU did not stop")
	// ErrClosed: the machine was closed or already ran.
	ErrClosed = errors.New("vmm: machine closed")
)

// ExitError says why a vCPU stopped the machine: the exit, the vCPU and where
// the guest was. After a triple fault on AMD hosts KVM has already reset the
// vCPU (RIP reads 0xfff0); on Intel RIP is the faulting instruction.
type ExitError struct {
	VCPU   int
	Reason kvm.ExitReason
	RIP    uint64
	Detail string
	kind   error // ErrTripleFault or ErrGuest
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("%v on vCPU %d at RIP %#x", e.Reason, e.VCPU, e.RIP)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return e.kind.Error() + ": " + msg
}

// Unwrap lets errors.Is find ErrTripleFault or ErrGuest.
func (e *ExitError) Unwrap() error { return e.kind }
