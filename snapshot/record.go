package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/smolvm/smolvm/pager"
)

// RecordOptions tune RecordWorkingSet.
type RecordOptions struct {
	// StoreDir is the chunk store of a thin bundle.
	StoreDir string
	// Daemon tunes the bundle's daemon.
	Daemon DaemonOptions
	// ReadyTimeout bounds the wait for the restored guest's agent
	// (default 60 s).
	ReadyTimeout time.Duration
}

// RecordWorkingSet restores the bundle at bundlePath once, lazily
// (userfaultfd, nothing prefetched), with the daemon recording which memory
// the guest touches until its agent answers, then stops that clone and
// rewrites the bundle with that list as the manifest's working set and
// those pages in frames of their own (SetWorkingSet: a new file renamed over
// the old one, with the same image bytes and a new manifest digest). A later
// run prefetches the list. It returns the working set recorded.
func RecordWorkingSet(ctx context.Context, bundlePath string, opts RecordOptions) (*pager.WorkingSet, error) {
	tmp, err := os.MkdirTemp("", "smolvm-record-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: record: %w", err)
	}
	defer os.RemoveAll(tmp)
	console := &consoleTail{max: consoleTailBytes}
	r, err := Restore(ctx, RestoreOptions{
		Bundle: bundlePath, StoreDir: opts.StoreDir, Paging: PagingUFFD, NoPrefetch: true, Record: true,
		StateDir: tmp, VsockPath: filepath.Join(tmp, "vsock.sock"), Console: console, Log: console, Daemon: opts.Daemon,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: record working set: %w", err)
	}
	started := r.Daemon != nil && r.Daemon.Started
	mnt := ""
	if r.Daemon != nil {
		mnt = r.Daemon.MountPoint
	}
	ws, rerr := recordRun(ctx, r, opts.ReadyTimeout)
	cerr := r.Close()
	if started {
		// The rewritten bundle has a new digest, hence a daemon of its
		// own: this one would serve nobody.
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = StopDaemon(sctx, mnt)
		cancel()
	}
	if rerr != nil {
		return nil, fmt.Errorf("snapshot: record working set: %w%s", rerr, console.report())
	}
	if cerr != nil {
		return nil, fmt.Errorf("snapshot: record working set: %w", cerr)
	}
	if _, err := setWorkingSet(ctx, bundlePath, opts.StoreDir, ws); err != nil {
		return nil, err
	}
	return ws, nil
}

// recordRun runs the clone until its agent answers and returns the
// recorded working set; the clone is stopped either way.
func recordRun(ctx context.Context, r *Restored, readyTimeout time.Duration) (*pager.WorkingSet, error) {
	if readyTimeout <= 0 {
		readyTimeout = 60 * time.Second
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	ready, err := r.Ready(rctx, r.Identity("smolvm-record"))
	cancel()
	r.Machine.Stop()
	if rerr := <-runErr; rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	if ready.WorkingSet == nil {
		return nil, errors.New("the daemon recorded no working set")
	}
	return ready.WorkingSet, nil
}

// SetWorkingSet rewrites the bundle at path with ws's memory ranges as the
// manifest's working set and the working-set layout (writeLayout: those
// pages in frames of their own, first touch first; every image reads back
// the same bytes), into a temporary file beside path that is then renamed
// over it (a VM running from the old file keeps its inode).
func SetWorkingSet(path, storeDir string, ws *pager.WorkingSet) error {
	_, err := setWorkingSet(context.Background(), path, storeDir, ws)
	return err
}

// consoleTailBytes is how much of the recording clone's console is kept.
const consoleTailBytes = 4 << 10

// consoleTailLines is how many of its last lines an error quotes.
const consoleTailLines = 15

// consoleTail keeps the end of the recording clone's console (kernel
// messages, the agent's log), so that a recording that fails says what the
// guest said.
type consoleTail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (c *consoleTail) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > c.max {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-c.max:]...)
	}
	return len(p), nil
}

// report is "; guest console (last lines): ..." with up to
// consoleTailLines lines joined by " | ", or "" if the guest printed
// nothing since the restore.
func (c *consoleTail) report() string {
	c.mu.Lock()
	text := strings.ReplaceAll(string(c.buf), "\r", "")
	c.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "; the guest printed nothing on its console since the restore"
	}
	lines = lines[max(0, len(lines)-consoleTailLines):]
	return "; guest console (last lines): " + strings.Join(lines, " | ")
}
