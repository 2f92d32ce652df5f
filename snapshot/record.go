package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
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
// rewrites the bundle with that list as the manifest's working set (a new
// file renamed over the old one: frames and TOC are copied unchanged, so
// the new bundle has the same content and a new manifest digest). A later
// run prefetches the list. It returns the working set recorded.
func RecordWorkingSet(ctx context.Context, bundlePath string, opts RecordOptions) (*pager.WorkingSet, error) {
	tmp, err := os.MkdirTemp("", "smolvm-record-")
	if err != nil {
		return nil, fmt.Errorf("snapshot: record: %w", err)
	}
	defer os.RemoveAll(tmp)
	r, err := Restore(ctx, RestoreOptions{
		Bundle: bundlePath, StoreDir: opts.StoreDir, Paging: PagingUFFD, NoPrefetch: true, Record: true,
		StateDir: tmp, VsockPath: filepath.Join(tmp, "vsock.sock"), Console: io.Discard, Daemon: opts.Daemon,
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
		return nil, fmt.Errorf("snapshot: record working set: %w", rerr)
	}
	if cerr != nil {
		return nil, fmt.Errorf("snapshot: record working set: %w", cerr)
	}
	if err := SetWorkingSet(bundlePath, opts.StoreDir, ws); err != nil {
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
// manifest's working set: frames are copied raw, in table order (external
// frames stay references), into a temporary file beside path that is then
// renamed over it.
func SetWorkingSet(path, storeDir string, ws *pager.WorkingSet) error {
	b, err := chunkstore.Open(path, chunkstore.Options{StoreDir: storeDir})
	if err != nil {
		return fmt.Errorf("snapshot: set working set: %w", err)
	}
	defer b.Close()
	fr := b.Format()
	man := *fr.Manifest()
	man.WorkingSet = nil
	for _, pr := range ws.Ranges {
		if pr.Artifact == format.ArtifactMemory {
			man.WorkingSet = append(man.WorkingSet, format.PageRange{Page: pr.Page, Count: pr.Count})
		}
	}
	out, err := chunkstore.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("snapshot: set working set: %w", err)
	}
	defer out.Abort()
	w, err := format.NewWriter(out)
	if err != nil {
		return fmt.Errorf("snapshot: set working set: %w", err)
	}
	var buf []byte
	for i, f := range fr.Frames() {
		var idx int
		if f.External {
			idx, err = w.AddExternalFrame(f.Length, f.PageDigests)
		} else {
			if buf, err = fr.ReadRaw(i, buf); err != nil {
				return fmt.Errorf("snapshot: set working set: %w", err)
			}
			idx, err = w.AddFrame(buf, f.PageDigests)
		}
		if err != nil {
			return fmt.Errorf("snapshot: set working set: frame %d: %w", i, err)
		}
		if idx != i {
			return fmt.Errorf("snapshot: set working set: frame %d became %d (duplicate frame digest)", i, idx)
		}
	}
	man.TOC = ""
	if _, err := w.Finish(&man); err != nil {
		return fmt.Errorf("snapshot: set working set: %w", err)
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("snapshot: set working set: %w", err)
	}
	return nil
}
