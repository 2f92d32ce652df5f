package chunkstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// AtomicFile is a file written out of sight and made visible at its final
// path only by Commit: killed at any point before (even by SIGKILL), it
// leaves nothing at the path, and with O_TMPFILE (Linux, most filesystems)
// nothing anywhere.
type AtomicFile struct {
	*os.File
	path  string
	named bool // fallback: a visible temp name that Commit renames
	done  bool
}

// CreateAtomic opens an unnamed file in path's directory that Commit will
// publish at path.
func CreateAtomic(path string) (*AtomicFile, error) {
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err == nil {
		return &AtomicFile{File: os.NewFile(uintptr(fd), path), path: path}, nil
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	return &AtomicFile{File: f, path: path, named: true}, nil
}

// Commit flushes nothing to disk (a crash of the process, not of the
// machine, is what it guards against), closes the file and gives it its
// final name, replacing any file there.
func (a *AtomicFile) Commit() error {
	if a.done {
		return errors.New("AtomicFile: Commit after Commit or Abort")
	}
	a.done = true
	if a.named {
		tmp := a.Name()
		if err := a.Close(); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("closing %s: %w", a.path, err)
		}
		if err := os.Rename(tmp, a.path); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("publishing %s: %w", a.path, err)
		}
		return nil
	}
	defer a.Close()
	// Link the unnamed file under a unique hidden name, then rename it over
	// the target: linkat cannot replace an existing file.
	tmp := filepath.Join(filepath.Dir(a.path), "."+filepath.Base(a.path)+".link-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(uint64(a.Fd()), 10))
	proc := "/proc/self/fd/" + strconv.Itoa(int(a.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW); err != nil {
		return fmt.Errorf("publishing %s: link: %w", a.path, err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("publishing %s: %w", a.path, err)
	}
	return nil
}

// Abort discards the file. Safe to call after Commit (then a no-op), so
// `defer f.Abort()` is the usual pattern.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	name := a.Name()
	a.Close()
	if a.named {
		os.Remove(name)
	}
}
