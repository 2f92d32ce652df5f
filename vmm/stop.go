package vmm

import (
	"sync"
)

// StopReason says why a machine stopped.
type StopReason int

// Stop reasons.
const (
	StopNone     StopReason = iota // still running (or never ran)
	StopPowerOff                   // the guest entered ACPI S5
	StopReboot                     // the guest asked for a reset (ACPI reset register, i8042, system event)
	StopCanceled                   // Run's context was canceled
	StopError                      // a vCPU failed: see Run's error
)

func (r StopReason) String() string {
	switch r {
	case StopPowerOff:
		return "poweroff"
	case StopReboot:
		return "reboot"
	case StopCanceled:
		return "canceled"
	case StopError:
		return "error"
	}
	return "running"
}

// stopper records the first stop request and kicks the vCPUs out of KVM_RUN.
type stopper struct {
	once   sync.Once
	done   chan struct{}
	mu     sync.Mutex
	reason StopReason
	err    error
	kick   func() // set by Run before vCPUs start
}

func (s *stopper) init() { s.done = make(chan struct{}) }

// request stops the machine for reason (err for StopError); only the first
// request counts. Safe from any goroutine, including device callbacks on a
// vCPU thread.
func (s *stopper) request(reason StopReason, err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.reason, s.err = reason, err
		s.mu.Unlock()
		close(s.done)
		if s.kick != nil {
			s.kick()
		}
	})
}

func (s *stopper) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *stopper) result() (StopReason, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason, s.err
}
