package amd64

import "errors"

// Sentinel errors, for errors.Is.
var (
	// ErrNotBzImage: the kernel file is not a bzImage (bad boot flag or
	// header magic, truncated).
	ErrNotBzImage = errors.New("not a bzImage")
	// ErrProtocol: the bzImage uses a boot protocol this loader cannot
	// boot (older than 2.12 or without a 64-bit entry point).
	ErrProtocol = errors.New("unsupported boot protocol")
	// ErrMemoryTooSmall: guest RAM cannot hold the kernel, initrd and
	// tables.
	ErrMemoryTooSmall = errors.New("guest memory too small")
	// ErrCmdlineTooLong: the command line does not fit the kernel's
	// cmdline_size or CmdlineMax.
	ErrCmdlineTooLong = errors.New("kernel command line too long")
	// ErrInvalidConfig: a parameter out of range (CPU count, memory size).
	ErrInvalidConfig = errors.New("invalid machine configuration")
)
