package net

import "errors"

var (
	// ErrConfig: a Device was built with bad parameters.
	ErrConfig = errors.New("virtio-net: bad configuration")
	// ErrBadFrame: a transmitted chain is not a virtio-net header followed
	// by an Ethernet frame.
	ErrBadFrame = errors.New("virtio-net: bad frame")
	// ErrBadState: a saved State does not fit.
	ErrBadState = errors.New("virtio-net: bad saved state")
)
