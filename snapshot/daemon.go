package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/pager"
	"github.com/smolvm/smolvm/registry"
)

// Daemon is the smolmount process serving one bundle: a FUSE mount of its
// artifacts and the pager socket for lazily restored guests. Every run of
// a bundle shares it (and its frame cache); it outlives the runs and ends
// with `smolmount -u MOUNTPOINT` (StopDaemon).
type Daemon struct {
	MountPoint string
	PID        int
	// Socket is the pager socket (pager.DaemonSocket of MountPoint).
	Socket string
	// Log is the daemon's stdout and stderr.
	Log string
	// Started: this call started the daemon (false: an existing one).
	Started bool
}

// DaemonOptions tune EnsureDaemon.
type DaemonOptions struct {
	// Binary is the smolmount executable (default: SmolmountBinary()).
	Binary string
	// StoreDir is the chunk store of a thin bundle (smolmount --store).
	StoreDir string
	// Insecure: an oci:// bundle's registry speaks plain HTTP
	// (smolmount --insecure).
	Insecure bool
	// ReadyTimeout bounds the wait for a new daemon's ready line (default
	// 60 s: the lab's nested emulation is slow).
	ReadyTimeout time.Duration
}

// DefaultDaemonReadyTimeout is DaemonOptions.ReadyTimeout's default.
const DefaultDaemonReadyTimeout = 60 * time.Second

// ErrDaemon: the bundle's daemon could not be found or started.
var ErrDaemon = errors.New("snapshot: bundle daemon")

// readyLine starts the line smolmount prints once it serves.
var readyLine = []byte("smolmount: ready")

// SmolmountBinary finds smolmount: $SMOLVM_SMOLMOUNT, else next to the
// running executable (make build puts both in bin/), else on PATH.
func SmolmountBinary() (string, error) {
	if p := os.Getenv("SMOLVM_SMOLMOUNT"); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "smolmount")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("smolmount")
	if err != nil {
		return "", fmt.Errorf("%w: smolmount not found next to %s nor on PATH (make build; or set SMOLVM_SMOLMOUNT)", ErrDaemon, os.Args[0])
	}
	return p, nil
}

// daemonBase is where run-started daemons mount bundles and keep their
// logs and locks: "bundles" beside fusefs.RunDir().
func daemonBase() string { return filepath.Join(filepath.Dir(fusefs.RunDir()), "bundles") }

// daemonKey names the daemon of a bundle: its absolute path and manifest
// digest, so a file replaced at the same path gets a daemon of its own.
func daemonKey(bundleAbs string, digest format.Digest) string {
	sum := sha256.Sum256([]byte(bundleAbs + "\x00" + digest.String()))
	return hex.EncodeToString(sum[:10])
}

// DaemonMountPoint is where the daemon of the bundle at bundlePath (or
// oci://REF) with manifest digest mounts it: EnsureDaemon's MountPoint,
// known before the daemon runs.
func DaemonMountPoint(bundlePath string, digest format.Digest) (string, error) {
	abs := bundlePath
	if !registry.IsRef(bundlePath) {
		var err error
		if abs, err = filepath.Abs(bundlePath); err != nil {
			return "", fmt.Errorf("%w: %w", ErrDaemon, err)
		}
	}
	return filepath.Join(daemonBase(), daemonKey(abs, digest)), nil
}

// EnsureDaemon returns the daemon serving the bundle at bundlePath (or
// oci://REGISTRY/REPO:TAG, keyed by the reference and the manifest digest
// pushed there) whose manifest digest is digest, starting one when none runs: smolmount as a
// detached child in a session of its own (it outlives this process), its
// output to a log file beside the mount point, waiting for its ready line
// at most opt.ReadyTimeout. A stale mount of a dead daemon is cleaned up
// first. Concurrent callers for one bundle share one daemon (a lock file
// serialises them).
func EnsureDaemon(ctx context.Context, bundlePath string, digest format.Digest, opt DaemonOptions) (*Daemon, error) {
	abs := bundlePath
	if !registry.IsRef(bundlePath) {
		var err error
		if abs, err = filepath.Abs(bundlePath); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDaemon, err)
		}
	}
	mnt, err := DaemonMountPoint(abs, digest)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(mnt), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDaemon, err)
	}
	// Whoever holds the lock finishes within its own ready timeout and an
	// unmount: bound the wait accordingly.
	wait := opt.ReadyTimeout
	if wait <= 0 {
		wait = DefaultDaemonReadyTimeout
	}
	lctx, cancel := context.WithTimeout(ctx, 2*wait+30*time.Second)
	defer cancel()
	unlock, err := lockFile(lctx, mnt+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	if d, ok := liveDaemon(mnt, abs); ok {
		return d, nil
	}
	if _, err := fusefs.FindMount(mnt); err == nil {
		// A mount without a live daemon (killed, hung): clear it.
		uctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := fusefs.Unmount(uctx, mnt)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: stale mount %s: %w", ErrDaemon, mnt, err)
		}
	}
	return startDaemon(ctx, abs, mnt, opt)
}

// liveDaemon returns the daemon recorded for mnt if it still serves abs:
// its process lives and the mount is the one it recorded.
func liveDaemon(mnt, abs string) (*Daemon, bool) {
	rec, err := fusefs.ReadRecord(mnt)
	if err != nil || rec.Bundle != abs || unix.Kill(rec.PID, 0) != nil {
		return nil, false
	}
	info, err := fusefs.FindMount(mnt)
	if err != nil || info.Dev() != rec.Dev {
		return nil, false
	}
	sock, err := pager.DaemonSocket(mnt)
	if err != nil {
		return nil, false
	}
	return &Daemon{MountPoint: mnt, PID: rec.PID, Socket: sock, Log: mnt + ".log"}, true
}

func startDaemon(ctx context.Context, abs, mnt string, opt DaemonOptions) (*Daemon, error) {
	bin := opt.Binary
	if bin == "" {
		var err error
		if bin, err = SmolmountBinary(); err != nil {
			return nil, err
		}
	}
	timeout := opt.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultDaemonReadyTimeout
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDaemon, err)
	}
	logPath := mnt + ".log"
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDaemon, err)
	}
	defer logf.Close() // the child has its own copy
	args := []string{abs, mnt}
	if opt.StoreDir != "" {
		args = append(args, "--store", opt.StoreDir)
	}
	if opt.Insecure {
		args = append(args, "--insecure")
	}
	cmd := exec.Command(bin, args...)
	// stdout is a file, not a pipe: a daemon writing after this process
	// is gone must not die of SIGPIPE.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %w", ErrDaemon, bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it if it dies while we wait

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	fail := func(why error) (*Daemon, error) {
		_ = cmd.Process.Kill()
		<-exited
		return nil, fmt.Errorf("%w: smolmount %s at %s: %w; its log (%s): %s", ErrDaemon, abs, mnt, why, logPath, logTail(logPath))
	}
	for {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("%w: smolmount %s at %s exited before it was ready (%v); its log (%s): %s",
				ErrDaemon, abs, mnt, err, logPath, logTail(logPath))
		case <-deadline.C:
			return fail(fmt.Errorf("not ready within %v", timeout))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-tick.C:
		}
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, readyLine) {
			break
		}
	}
	sock, err := pager.DaemonSocket(mnt)
	if err != nil {
		return fail(err)
	}
	return &Daemon{MountPoint: mnt, PID: cmd.Process.Pid, Socket: sock, Log: logPath, Started: true}, nil
}

// logTail is the end of a daemon log, for errors.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	b = bytes.TrimSpace(b)
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
}

// StopDaemon ends the daemon serving mountpoint (smolmount -u), bounded by
// ctx.
func StopDaemon(ctx context.Context, mountpoint string) error {
	return fusefs.Unmount(ctx, mountpoint)
}

// lockFile takes an exclusive flock on path, polling until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDaemon, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("%w: lock %s: %w", ErrDaemon, path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%w: lock %s: %w", ErrDaemon, path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
