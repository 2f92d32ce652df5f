package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fuseCtlDir is where the fusectl filesystem exposes each FUSE connection.
const fuseCtlDir = "/sys/fs/fuse/connections"

// signalGrace bounds how long Unmount waits for a live daemon to unmount
// itself after SIGTERM before it aborts the connection.
const signalGrace = 3 * time.Second

// Unmount ends the FUSE mount at dir, whoever serves it, waiting at most
// until ctx ends. A live smolmount daemon (found through its Record) gets
// SIGTERM and unmounts itself, stopping its services; a mount without one
// is unmounted directly; if that fails or times out, or the daemon is dead
// or hung, the connection is aborted through fusectl and the mount detached
// lazily (readers still inside get errors, never a hang).
func Unmount(ctx context.Context, dir string) error {
	info, err := FindMount(dir)
	if err != nil {
		return err
	}
	if !info.IsFUSE() {
		return fmt.Errorf("fusefs: %s is a %s mount: %w", info.MountPoint, info.FSType, ErrNotFUSE)
	}
	abs := info.MountPoint
	rec, rerr := ReadRecord(abs)
	haveDaemon := rerr == nil && rec.Dev == info.Dev() && processAlive(rec.PID)
	if haveDaemon {
		if err := unix.Kill(rec.PID, unix.SIGTERM); err == nil {
			wctx, cancel := context.WithTimeout(ctx, signalGrace)
			gone := waitGone(wctx, abs, info.ID)
			cancel()
			if gone {
				waitExit(ctx, rec.PID, signalGrace)
				return nil
			}
		}
	} else {
		wctx, cancel := context.WithTimeout(ctx, signalGrace)
		err := bounded(wctx, func() error { return plainUnmount(abs) })
		cancel()
		if err == nil && waitGone(ctx, abs, info.ID) {
			removeStaleRecord(abs)
			return nil
		}
	}
	if err := forceUnmount(ctx, info, abs); err != nil {
		return fmt.Errorf("fusefs: unmount %s: %w", abs, err)
	}
	if !waitGone(ctx, abs, info.ID) {
		return fmt.Errorf("fusefs: unmount %s: mount still listed: %w", abs, ErrTimeout)
	}
	if haveDaemon {
		// An aborted daemon sees its device go away and exits, unless it
		// is stopped or wedged: do not wait long for that.
		waitExit(ctx, rec.PID, 500*time.Millisecond)
	}
	removeStaleRecord(abs)
	return nil
}

// forceUnmount aborts the FUSE connection of info (so every pending and
// future request fails at once) and detaches the mount.
func forceUnmount(ctx context.Context, info MountInfo, dir string) error {
	abortErr := bounded(ctx, func() error { return Abort(info) })
	var err error
	if os.Geteuid() == 0 {
		err = bounded(ctx, func() error { return unix.Unmount(dir, unix.MNT_DETACH) })
	} else {
		err = bounded(ctx, func() error { return fusermount(dir, "-u", "-z") })
	}
	if err != nil && !errors.Is(err, unix.EINVAL) { // EINVAL: already gone
		if abortErr != nil {
			return fmt.Errorf("abort: %v; lazy unmount: %w", abortErr, err)
		}
		return fmt.Errorf("lazy unmount: %w", err)
	}
	return nil
}

// Abort aborts the FUSE connection of a mount through fusectl, mounting
// fusectl at /sys/fs/fuse/connections first if needed (root only) and
// unmounting it again if it did.
func Abort(info MountInfo) (err error) {
	if !info.IsFUSE() {
		return fmt.Errorf("fusefs: %s: %w", info.MountPoint, ErrNotFUSE)
	}
	// The connection is named by the superblock's kernel dev_t in decimal
	// (major<<20 | minor); FUSE mounts get anonymous devices (major 0), so
	// in practice it is the minor.
	abort := filepath.Join(fuseCtlDir, strconv.FormatUint(uint64(info.Major)<<20|uint64(info.Minor), 10), "abort")
	// Twice at most: another Abort that mounted fusectl may unmount it
	// between our look and our write.
	for attempt := 0; ; attempt++ {
		if _, serr := os.Stat(filepath.Dir(abort)); serr != nil {
			merr := unix.Mount("fusectl", fuseCtlDir, "fusectl", 0, "")
			switch {
			case merr == nil:
				defer unix.Unmount(fuseCtlDir, 0) // ours: leave none behind
			case !errors.Is(merr, unix.EBUSY):
				return fmt.Errorf("fusefs: mount fusectl at %s: %w", fuseCtlDir, merr)
			}
		}
		err = os.WriteFile(abort, []byte("1"), 0)
		if err == nil {
			return nil
		}
		if attempt == 1 || !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("fusefs: abort connection %s: %w", info.Dev(), err)
		}
	}
}

func plainUnmount(dir string) error {
	if os.Geteuid() == 0 {
		return unix.Unmount(dir, 0)
	}
	return fusermount(dir, "-u")
}

func fusermount(dir string, args ...string) error {
	bin := "fusermount3"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "fusermount"
	}
	out, err := exec.Command(bin, append(args, dir)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// bounded runs f (a syscall that a wedged kernel or daemon could block) and
// gives up when ctx ends; f then finishes in the background.
func bounded(ctx context.Context, f func() error) error {
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
	}
}

// waitGone polls mountinfo until the mount with id is no longer at dir.
func waitGone(ctx context.Context, dir string, id int) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m, err := FindMount(dir)
		if errors.Is(err, ErrNotMounted) || (err == nil && m.ID != id) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

func waitExit(ctx context.Context, pid int, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for processAlive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

func removeStaleRecord(dir string) {
	if r, err := ReadRecord(dir); err == nil && !processAlive(r.PID) {
		RemoveRecord(dir, r.PID)
	}
}
