package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors.
var (
	// ErrReadOnly: a write to a read-only disk.
	ErrReadOnly = errors.New("disk: read-only")
	// ErrOutOfRange: an access past the end of the disk.
	ErrOutOfRange = errors.New("disk: access past the end")
	// ErrCorrupt: an overlay's block map is damaged or does not fit its base.
	ErrCorrupt = errors.New("disk: corrupt overlay")
	// ErrClosed: the disk was closed.
	ErrClosed = errors.New("disk: closed")
	// ErrMode: an unknown mode or a missing overlay path.
	ErrMode = errors.New("disk: bad mode")
)

// Disk is a block device's backing store. Accesses may be at any offset and
// length inside [0, Size()); Flush makes every completed write durable.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
	ReadOnly() bool
	Flush() error
	Close() error
}

// Mode is how a disk image is used.
type Mode string

// Modes.
const (
	ModeRW  Mode = "rw"  // writes land in the image
	ModeRO  Mode = "ro"  // writes fail
	ModeCOW Mode = "cow" // the image is never written; writes go to an overlay
)

// ParseMode checks a mode name ("" means rw).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case "":
		return ModeRW, nil
	case ModeRW, ModeRO, ModeCOW:
		return m, nil
	}
	return "", fmt.Errorf("%w: %q (want rw, ro or cow)", ErrMode, s)
}

// Open opens the image at path in mode; cow needs overlayPath (created if
// absent, reopened if present).
func Open(path string, mode Mode, overlayPath string) (Disk, error) {
	switch mode {
	case ModeRW, "":
		return OpenFile(path, false)
	case ModeRO:
		return OpenFile(path, true)
	case ModeCOW:
		if overlayPath == "" {
			return nil, fmt.Errorf("%w: cow disk %s has no overlay path", ErrMode, path)
		}
		base, err := OpenFile(path, true)
		if err != nil {
			return nil, err
		}
		o, err := OpenOverlay(base, base.Size(), overlayPath, OverlayOptions{})
		if err != nil {
			base.Close()
			return nil, err
		}
		o.closeBase = base.Close
		return o, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrMode, mode)
}

// File is a raw image file.
type File struct {
	f    *os.File
	size int64
	ro   bool
}

// OpenFile opens a raw image, read-only or read-write.
func OpenFile(path string, readOnly bool) (*File, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("disk: %w", err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		f.Close()
		return nil, fmt.Errorf("disk: %s is not a file or block device", path)
	}
	size := fi.Size()
	if fi.Mode()&os.ModeDevice != 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("disk: size of %s: %w", path, err)
		}
	}
	return &File{f: f, size: size, ro: readOnly}, nil
}

func checkRange(name string, off int64, n int, size int64) error {
	if off < 0 || off > size || int64(n) > size-off {
		return fmt.Errorf("%w: %s: [%d, +%d) of %d bytes", ErrOutOfRange, name, off, n, size)
	}
	return nil
}

// ReadAt reads from the image.
func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRange(d.f.Name(), off, len(p), d.size); err != nil {
		return 0, err
	}
	n, err := d.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("disk: read %s at %d: %w", d.f.Name(), off, err)
	}
	return n, nil
}

// WriteAt writes to the image (ErrReadOnly if read-only).
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if d.ro {
		return 0, fmt.Errorf("%w: %s", ErrReadOnly, d.f.Name())
	}
	if err := checkRange(d.f.Name(), off, len(p), d.size); err != nil {
		return 0, err
	}
	n, err := d.f.WriteAt(p, off)
	if err != nil {
		return n, fmt.Errorf("disk: write %s at %d: %w", d.f.Name(), off, err)
	}
	return n, nil
}

// Size is the image's size in bytes.
func (d *File) Size() int64 { return d.size }

// ReadOnly reports whether writes fail.
func (d *File) ReadOnly() bool { return d.ro }

// Flush makes written data durable (fdatasync).
func (d *File) Flush() error {
	if d.ro {
		return nil
	}
	if err := unix.Fdatasync(int(d.f.Fd())); err != nil {
		return fmt.Errorf("disk: fdatasync %s: %w", d.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }

// Name is the image's path.
func (d *File) Name() string { return d.f.Name() }
