package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/pager"
	"github.com/smolvm/smolvm/vmm"
)

// Heartbeat of a lazily restored VM's daemon: a daemon that does not
// answer within pagerHeartbeatTimeout is taken for dead (the VM stops).
const (
	pagerHeartbeatInterval = 2 * time.Second
	pagerHeartbeatTimeout  = 10 * time.Second
)

// setupMemory gives the new machine its memory for r.Paging, before any of
// it is touched.
func (r *Restored) setupMemory(ctx context.Context) error {
	switch r.Paging {
	case PagingUFFD:
		return r.attachPager(ctx)
	case PagingMmap:
		return r.startPopulate(ctx)
	default:
		return r.fillEager(ctx)
	}
}

// workingSet is the bundle's working set as the pager takes it (nil when
// it has none or prefetch is off).
func (r *Restored) workingSet() *pager.WorkingSet {
	man := r.bundle.Manifest()
	if r.opts.NoPrefetch || len(man.WorkingSet) == 0 {
		return nil
	}
	ws := &pager.WorkingSet{Version: pager.WorkingSetVersion, PageSize: format.PageSize}
	for _, p := range man.WorkingSet {
		ws.Ranges = append(ws.Ranges, pager.PageRange{Artifact: format.ArtifactMemory, Page: p.Page, Count: p.Count})
	}
	return ws
}

// ramRegions is guest RAM as pager regions of the memory artifact.
func (r *Restored) ramRegions() []pager.Region {
	var regions []pager.Region
	for i, reg := range r.Machine.RAM() {
		regions = append(regions, pager.Region{
			HostAddr: pager.HostAddr(reg.Data), Length: uint64(len(reg.Data)),
			Artifact: format.ArtifactMemory, Offset: int64(r.Saved.Memory[i].Offset),
		})
	}
	return regions
}

// attachPager registers guest RAM with the daemon's pager.
func (r *Restored) attachPager(ctx context.Context) error {
	c, fd, err := pager.Attach(ctx, r.Daemon.Socket, r.ramRegions(), pager.RegisterOptions{Record: r.opts.Record, Prefetch: r.workingSet()})
	if err != nil {
		return fmt.Errorf("snapshot: %s: %w", r.Bundle, err)
	}
	r.client, r.uffd = c, fd
	c.Heartbeat(pagerHeartbeatInterval, pagerHeartbeatTimeout)
	r.startWatch()
	if r.opts.WaitPrefetch && r.workingSet() != nil {
		return r.waitPrefetch(ctx)
	}
	return nil
}

// prefetchTimeout bounds waiting for the prefetch (default 30 s).
func (r *Restored) prefetchTimeout() time.Duration {
	if r.opts.PrefetchTimeout > 0 {
		return r.opts.PrefetchTimeout
	}
	return 30 * time.Second
}

// waitPrefetch waits until the daemon has worked through the working set,
// or PrefetchTimeout passes (then the guest starts anyway): one blocking
// request, so neither process wakes while the daemon copies (polling every
// few milliseconds cost the copies time in the lab's overcommitted CPUs).
// A daemon without the request (older) is polled instead.
func (r *Restored) waitPrefetch(ctx context.Context) error {
	st, err := r.client.WaitPrefetch(ctx, r.prefetchTimeout())
	switch {
	case err == nil:
		r.prefetchComplete = st.PrefetchDone
		if ferr := r.FaultErr(); ferr != nil && !st.PrefetchDone {
			return fmt.Errorf("snapshot: %s: prefetch: %w", r.Bundle, ferr)
		}
		return nil
	case errors.Is(err, pager.ErrRejected):
		return r.pollPrefetch(ctx)
	default:
		return fmt.Errorf("snapshot: %s: waiting for prefetch: %w", r.Bundle, err)
	}
}

// pollPrefetch polls the daemon's stats until the prefetch is done, or
// PrefetchTimeout passes.
func (r *Restored) pollPrefetch(ctx context.Context) error {
	deadline := time.Now().Add(r.prefetchTimeout())
	for time.Now().Before(deadline) {
		st, err := r.client.Stats(ctx)
		if err != nil {
			return fmt.Errorf("snapshot: %s: waiting for prefetch: %w", r.Bundle, err)
		}
		if st.PrefetchDone {
			r.prefetchComplete = true
			return nil
		}
		if err := r.FaultErr(); err != nil {
			return fmt.Errorf("snapshot: %s: prefetch: %w", r.Bundle, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// startPopulate reads the working set's pages into the private file
// mapping (MADV_POPULATE_READ: page-cache pages mapped read-only, shared
// between clones): before the vCPUs run with WaitPrefetch (bounded by
// PrefetchTimeout), else in the background, racing the guest.
func (r *Restored) startPopulate(ctx context.Context) error {
	r.fsBefore = r.fsBytesRead()
	ws := r.workingSet()
	if ws == nil {
		return nil
	}
	ram := r.Machine.RAM()
	populate := func(ctx context.Context) bool {
		for _, pr := range ws.Ranges {
			if ctx.Err() != nil {
				return false
			}
			b := ramSlice(ram, r.Saved.Memory, pr.Page*format.PageSize, pr.Count*format.PageSize)
			if b == nil {
				continue
			}
			if err := unix.Madvise(b, unix.MADV_POPULATE_READ); err == unix.EINVAL {
				_ = unix.Madvise(b, unix.MADV_WILLNEED) // before Linux 5.14
			}
		}
		return true
	}
	if r.opts.WaitPrefetch {
		wctx, cancel := context.WithTimeout(ctx, r.prefetchTimeout())
		defer cancel()
		r.prefetchComplete = populate(wctx)
		return ctx.Err()
	}
	bctx, cancel := context.WithCancel(context.Background())
	r.stopFill = cancel
	r.populate.Add(1)
	go func() {
		defer r.populate.Done()
		populate(bctx)
	}()
	return nil
}

// ramSlice is guest RAM holding memory-artifact bytes [off, off+n), or nil
// when that range is not within one region.
func ramSlice(ram []vmm.RAMRegion, layout []MemoryRegion, off, n int64) []byte {
	for i, l := range layout {
		if off >= int64(l.Offset) && off+n <= int64(l.Offset+l.Size) && i < len(ram) {
			lo := off - int64(l.Offset)
			return ram[i].Data[lo : lo+n]
		}
	}
	return nil
}

// ramWriter writes memory-artifact bytes into guest RAM (eager restore).
type ramWriter struct {
	ram    []vmm.RAMRegion
	layout []MemoryRegion
}

func (w ramWriter) WriteAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		o := off + int64(done)
		var dst []byte
		for i, l := range w.layout {
			if o >= int64(l.Offset) && o < int64(l.Offset+l.Size) {
				dst = w.ram[i].Data[o-int64(l.Offset):]
				break
			}
		}
		if dst == nil {
			return done, fmt.Errorf("snapshot: memory offset %#x is outside guest RAM", o)
		}
		done += copy(dst, p[done:])
	}
	return done, nil
}

// fillEager reads every non-zero page of memory, each frame verified
// before a byte of it is used, into guest RAM: a bad frame fails the
// restore before the guest runs.
func (r *Restored) fillEager(ctx context.Context) error {
	w := ramWriter{ram: r.Machine.RAM(), layout: r.Saved.Memory}
	var n int64
	if err := r.bundle.Extract(ctx, format.ArtifactMemory, w, func(k int64) { n += k }); err != nil {
		return fmt.Errorf("snapshot: %s: memory: %w", r.Bundle, err)
	}
	r.eagerBytes = n
	return nil
}

// fsBytesRead is the daemon's FUSE bytes read so far (its .stats), or -1.
func (r *Restored) fsBytesRead() int64 {
	if r.Daemon == nil {
		return -1
	}
	// The .stats file is read by this process and served by the daemon:
	// another process, so no self-fault.
	b, err := os.ReadFile(filepath.Join(r.Daemon.MountPoint, ".stats"))
	if err != nil {
		return -1
	}
	st, _, err := fusefs.ParseStats(b)
	if err != nil {
		return -1
	}
	return st.BytesRead
}

// MemoryStats are counts of how a restored machine's memory was read.
type MemoryStats struct {
	Paging Paging `json:"paging"`
	// BytesRead is guest memory read from the bundle: uffd: pages copied
	// (4 KiB each, prefetch included); mmap: bytes the daemon's FUSE mount
	// served since the restore began (all clones of the daemon); eager:
	// the data pages.
	BytesRead int64 `json:"bytes_read"`
	// Pager is the daemon's counters for this VM (uffd only).
	Pager *pager.Stats `json:"pager,omitempty"`
	// PrefetchUse is how the guest used the working set prefetched before
	// its vCPUs first ran, from when they did (uffd and mmap, with the
	// prefetch complete first); PrefetchUseError says why it is missing.
	PrefetchUse      *pager.PrefetchUse `json:"prefetch_use,omitempty"`
	PrefetchUseError string             `json:"prefetch_use_error,omitempty"`
}

// MemoryStats reports how much memory was read so far.
func (r *Restored) MemoryStats(ctx context.Context) (MemoryStats, error) {
	ms := MemoryStats{Paging: r.Paging}
	switch r.Paging {
	case PagingUFFD:
		st, err := r.client.Stats(ctx)
		if err != nil {
			return ms, fmt.Errorf("snapshot: pager stats: %w", err)
		}
		ms.Pager, ms.BytesRead = &st, st.PagesCopied*format.PageSize
	case PagingMmap:
		if now := r.fsBytesRead(); now >= 0 && r.fsBefore >= 0 {
			ms.BytesRead = now - r.fsBefore
		}
	default:
		ms.BytesRead = r.eagerBytes
	}
	ms.PrefetchUse, ms.PrefetchUseError = r.prefetchUse()
	return ms, nil
}

// MarshalJSON keeps Timeline readable in seconds.
func (t Timeline) MarshalJSON() ([]byte, error) {
	s := func(d time.Duration) float64 { return d.Seconds() }
	return json.Marshal(map[string]any{
		"opened_s": s(t.Opened), "daemon_s": s(t.Daemon), "memory_s": s(t.Memory),
		"restored_s": s(t.Restored), "resumed_s": s(t.Resumed), "connected_s": s(t.Connected), "ready_s": s(t.Ready),
	})
}
