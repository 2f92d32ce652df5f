package kvm

import "errors"

// Sentinel errors, for errors.Is.
var (
	// ErrUnavailable: /dev/kvm cannot be opened.
	ErrUnavailable = errors.New("kvm: /dev/kvm unavailable")
	// ErrAPIVersion: the kernel speaks a KVM API other than version 12.
	ErrAPIVersion = errors.New("kvm: unsupported KVM API version")
	// ErrMissingCapability: a capability this package needs is absent.
	ErrMissingCapability = errors.New("kvm: missing capability")
	// ErrClosed: the object was used after Close.
	ErrClosed = errors.New("kvm: use after close")
	// ErrState: saved state that does not fit this vCPU or VM.
	ErrState = errors.New("kvm: bad saved state")
)
