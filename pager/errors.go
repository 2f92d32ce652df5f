package pager

import (
	"errors"
	"fmt"
)

// Sentinel errors, for errors.Is.
var (
	// ErrFrameUnavailable: the daemon could not get a frame a fault needs
	// (corrupt, store error, timeout after retries). The VM must stop.
	ErrFrameUnavailable = errors.New("pager: frame unavailable")
	// ErrDaemonGone: the daemon's socket closed while the client was
	// registered; nobody serves the VM's faults any more. The VM must stop.
	ErrDaemonGone = errors.New("pager: daemon connection lost")
	// ErrProtocol: a malformed, unexpected or oversized message.
	ErrProtocol = errors.New("pager: protocol error")
	// ErrRejected: the daemon answered a request with an error.
	ErrRejected = errors.New("pager: request rejected")
)

// FaultError is what the daemon reports when it cannot serve a fault: the
// faulting thread stays blocked (never zero-filled) and the VMM must stop
// the VM.
type FaultError struct {
	Addr     uint64 `json:"addr"`
	Artifact string `json:"artifact"`
	Page     int64  `json:"page"`  // image page
	Frame    int32  `json:"frame"` // -1 when no frame is involved
	Reason   string `json:"reason"`
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("pager: cannot serve fault at %#x (%s page %d, frame %d): %s",
		e.Addr, e.Artifact, e.Page, e.Frame, e.Reason)
}

// Unwrap makes errors.Is(err, ErrFrameUnavailable) true.
func (e *FaultError) Unwrap() error { return ErrFrameUnavailable }
