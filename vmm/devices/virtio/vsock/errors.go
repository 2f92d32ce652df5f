package vsock

import "errors"

// Sentinel errors, wrapped with context where they are returned.
var (
	// ErrBadPacket: a packet from the guest is malformed (short header,
	// payload length disagreeing with the buffer, unknown type).
	ErrBadPacket = errors.New("vsock: malformed packet")
	// ErrClosed: the device or its host side has been closed.
	ErrClosed = errors.New("vsock: closed")
	// ErrBadConnect: a host client's handshake line is not "CONNECT <port>\n".
	ErrBadConnect = errors.New("vsock: bad CONNECT line")
	// ErrRefused: the guest reset a connection the host asked for, or did
	// not answer in time.
	ErrRefused = errors.New("vsock: connection refused by the guest")
	// ErrTooMany: the connection table is full.
	ErrTooMany = errors.New("vsock: too many connections")
	// ErrState: a saved State does not fit this device.
	ErrState = errors.New("vsock: bad saved state")
)
