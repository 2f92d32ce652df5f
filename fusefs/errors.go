package fusefs

import "errors"

var (
	// ErrBadPath: an artifact name cannot be a path in the mount.
	ErrBadPath = errors.New("invalid artifact path")
	// ErrDuplicate: two artifacts map to one path, or a file and a
	// directory share a name.
	ErrDuplicate = errors.New("duplicate artifact path")
	// ErrNotMounted: the path is not a mount point.
	ErrNotMounted = errors.New("not mounted")
	// ErrNotFUSE: the mount is not a FUSE filesystem, so Unmount refuses it.
	ErrNotFUSE = errors.New("not a FUSE mount")
	// ErrTimeout: a bounded wait for the kernel or the daemon ran out.
	ErrTimeout = errors.New("timed out")
)
