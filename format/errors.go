package format

import (
	"errors"
	"fmt"
)

// Sentinel errors: every error the reader returns wraps one of them, so that
// callers can tell a damaged file from an unsupported one with errors.Is.
var (
	// ErrBadMagic: the file is not a .smolmachine bundle (header or
	// trailer magic is wrong).
	ErrBadMagic = errors.New("not a .smolmachine bundle (bad magic)")
	// ErrVersion: the bundle has a newer major format version than this
	// reader knows.
	ErrVersion = errors.New("unsupported .smolmachine format version")
	// ErrTruncated: the file is shorter than its own structure says.
	ErrTruncated = errors.New("truncated .smolmachine bundle")
	// ErrCorrupt: a structure, digest or frame does not check out.
	ErrCorrupt = errors.New("corrupt .smolmachine bundle")
	// ErrNotFound: the bundle has no such artifact or frame, or a frame
	// is external (held in a store, not in the file).
	ErrNotFound = errors.New("not found")
)

// corruptf returns an error wrapping ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// FrameError reports a frame whose bytes do not match its digest. Expected is
// the frame digest from the table of contents, Actual the digest computed
// from the bytes read (zero when they could not even be decompressed). Page
// is the first slot whose page digest differs, or -1.
type FrameError struct {
	Expected Digest
	Actual   Digest
	Page     int
	Reason   string
}

func (e *FrameError) Error() string {
	s := fmt.Sprintf("frame %s: %s", e.Expected, e.Reason)
	if e.Page >= 0 {
		s += fmt.Sprintf(" (first bad page slot %d)", e.Page)
	}
	var zero Digest
	if e.Actual != zero {
		s += fmt.Sprintf(": expected %s, got %s", e.Expected, e.Actual)
	}
	return s
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *FrameError) Unwrap() error { return ErrCorrupt }
