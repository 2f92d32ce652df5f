package virtio

import "errors"

// Sentinel errors, wrapped with context where they are returned.
var (
	// ErrBadAddress: a guest-physical range is not (entirely) in RAM.
	ErrBadAddress = errors.New("virtio: guest address out of range")
	// ErrBadChain: a descriptor chain is malformed (loop, bad index, too
	// long, bad indirect table, readable after writable).
	ErrBadChain = errors.New("virtio: malformed descriptor chain")
	// ErrBadQueue: a queue's configuration or indices are impossible.
	ErrBadQueue = errors.New("virtio: bad queue")
	// ErrBadState: a saved State does not fit this transport or device.
	ErrBadState = errors.New("virtio: bad saved state")
	// ErrNotPaused: Save was called on a running device.
	ErrNotPaused = errors.New("virtio: device is running (pause it before Save)")
	// ErrStuck: a device goroutine did not stop in time.
	ErrStuck = errors.New("virtio: device goroutine did not stop")
	// ErrConfig: a transport or device was built with bad parameters.
	ErrConfig = errors.New("virtio: bad configuration")
)
