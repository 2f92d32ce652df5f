package uffd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is the device that hands out userfaultfds without the
// vm.unprivileged_userfaultfd sysctl (Linux 6.1+, access by file mode).
const DevicePath = "/dev/userfaultfd"

// devicePath is DevicePath; tests point it elsewhere to take the fallback.
var devicePath = DevicePath

// New creates a userfaultfd with O_CLOEXEC|O_NONBLOCK: first through
// /dev/userfaultfd (USERFAULTFD_IOC_NEW), then through the userfaultfd(2)
// system call. The caller owns the fd and must call API on it before
// anything else.
func New() (int, error) {
	flags := unix.O_CLOEXEC | unix.O_NONBLOCK
	devErr := error(nil)
	if dev, err := unix.Open(devicePath, unix.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
		fd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(dev), ioctlNew, uintptr(flags))
		unix.Close(dev)
		if errno == 0 {
			return int(fd), nil
		}
		devErr = fmt.Errorf("%s: USERFAULTFD_IOC_NEW: %w", devicePath, errno)
	} else {
		devErr = fmt.Errorf("open %s: %w", devicePath, err)
	}
	fd, _, errno := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if errno != 0 {
		return -1, fmt.Errorf("uffd: cannot create a userfaultfd (%v; userfaultfd(2): %w; as non-root set vm.unprivileged_userfaultfd=1 or grant access to %s)",
			devErr, errno, DevicePath)
	}
	return int(fd), nil
}

// API does the UFFDIO_API handshake asking for features and returns the
// features and ioctls the kernel granted. It fails if a requested feature is
// missing.
func API(fd int, features uint64) (granted, ioctls uint64, err error) {
	a := uffdioAPI{API: apiVersion, Features: features}
	if err := ioctl(fd, ioctlAPI, unsafe.Pointer(&a)); err != nil {
		return 0, 0, fmt.Errorf("uffd: UFFDIO_API (features %#x): %w", features, err)
	}
	if a.Features&features != features {
		return a.Features, a.Ioctls, fmt.Errorf("uffd: UFFDIO_API: kernel lacks features %#x", features&^a.Features)
	}
	return a.Features, a.Ioctls, nil
}

// Register registers [start, start+length) (page aligned) for the given mode
// (ModeMissing) and returns the ioctls allowed on the range.
func Register(fd int, start uintptr, length uint64, mode uint64) (ioctls uint64, err error) {
	r := uffdioRegister{Range: uffdioRange{Start: uint64(start), Len: length}, Mode: mode}
	if err := ioctl(fd, ioctlRegister, unsafe.Pointer(&r)); err != nil {
		return 0, fmt.Errorf("uffd: UFFDIO_REGISTER [%#x, +%#x) mode %#x: %w", start, length, mode, err)
	}
	return r.Ioctls, nil
}

// Unregister removes [start, start+length) from the userfaultfd; threads
// waiting on it are woken and fault again normally.
func Unregister(fd int, start uintptr, length uint64) error {
	r := uffdioRange{Start: uint64(start), Len: length}
	if err := ioctl(fd, ioctlUnregister, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("uffd: UFFDIO_UNREGISTER [%#x, +%#x): %w", start, length, err)
	}
	return nil
}

// Copy atomically fills the missing pages [dst, dst+length) of the
// registered process with length bytes at src in this process. It returns
// the bytes copied: on EAGAIN the copy may be partial (n > 0), and then only
// the range [dst, dst+n) was filled (and woken unless DontWake). The error
// is the raw errno (unix.EEXIST: the page at dst+n is already present;
// unix.EAGAIN: the mm is changing, retry; unix.ESRCH: the process is gone;
// unix.ENOENT: no mapping at dst).
func Copy(fd int, dst uintptr, src unsafe.Pointer, length uint64, mode uint64) (int64, error) {
	c := uffdioCopy{Dst: uint64(dst), Src: uint64(uintptr(src)), Len: length, Mode: mode}
	err := ioctl(fd, ioctlCopy, unsafe.Pointer(&c))
	return done(c.Copy), err
}

// ZeroPage fills the missing pages [dst, dst+length) with zeros, with the
// same partial-result and error rules as Copy.
func ZeroPage(fd int, dst uintptr, length uint64, mode uint64) (int64, error) {
	z := uffdioZeroPage{Range: uffdioRange{Start: uint64(dst), Len: length}, Mode: mode}
	err := ioctl(fd, ioctlZeroPage, unsafe.Pointer(&z))
	return done(z.ZeroPage), err
}

// Wake wakes threads waiting on faults in [start, start+length): needed
// after a DontWake copy, or when a fault arrives for a page that is already
// present.
func Wake(fd int, start uintptr, length uint64) error {
	r := uffdioRange{Start: uint64(start), Len: length}
	if err := ioctl(fd, ioctlWake, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("uffd: UFFDIO_WAKE [%#x, +%#x): %w", start, length, err)
	}
	return nil
}

// done turns the copy/zeropage out-field into bytes done (a negated errno
// means none).
func done(v int64) int64 {
	if v < 0 {
		return 0
	}
	return v
}

func ioctl(fd int, req uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// Msg is one decoded uffd_msg.
type Msg struct {
	Event uint8
	// Pagefault: Flags (PagefaultFlag*) and Address (page aligned unless
	// UFFD_FEATURE_EXACT_ADDRESS). Remove/Unmap: Address = start, End.
	Flags   uint64
	Address uint64
	End     uint64
	// ThreadID of the faulting thread (with FeatureThreadID).
	ThreadID uint32
}

// ErrShortMsg is returned by DecodeMsg for a buffer shorter than MsgSize.
var ErrShortMsg = errors.New("uffd: short message")

// DecodeMsg decodes one uffd_msg from b (MsgSize bytes, host byte order).
func DecodeMsg(b []byte) (Msg, error) {
	if len(b) < MsgSize {
		return Msg{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortMsg, len(b), MsgSize)
	}
	le := binary.NativeEndian
	m := Msg{Event: b[0]}
	switch m.Event {
	case EventPagefault:
		m.Flags = le.Uint64(b[8:])
		m.Address = le.Uint64(b[16:])
		m.ThreadID = le.Uint32(b[24:])
	case EventRemove, EventUnmap:
		m.Address = le.Uint64(b[8:])
		m.End = le.Uint64(b[16:])
	case EventRemap:
		m.Address = le.Uint64(b[8:]) // from
		m.End = le.Uint64(b[16:])    // to
		m.Flags = le.Uint64(b[24:])  // len
	case EventFork:
		m.Flags = uint64(le.Uint32(b[8:])) // new uffd
	}
	return m, nil
}

// Read reads as many pending messages as fit in buf (a multiple of
// MsgSize) from a non-blocking userfaultfd. It returns n = 0 and nil error
// when none is pending.
func Read(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, fmt.Errorf("uffd: read: %w", err)
		case n%MsgSize != 0:
			return 0, fmt.Errorf("uffd: read %d bytes, not a multiple of %d", n, MsgSize)
		}
		return n / MsgSize, nil
	}
}

// PageSize is the host page size.
var PageSize = os.Getpagesize()
