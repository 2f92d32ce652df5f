package snapshot

import (
	"github.com/smolvm/smolvm/pager"
)

// Prefetched pages used and wasted (pager.AccessTracker): with the whole
// working set in before the vCPUs first run, markAccess clears the pages'
// referenced flags just before they do; MemoryStats then counts which of
// the working set's pages the guest touched since. Only /proc files are
// read: guest memory is never touched.

// markAccess starts measuring the prefetch's use, if the prefetch
// completed before the vCPUs' first run. Failure only loses the figure.
func (r *Restored) markAccess() {
	if !r.prefetchComplete || r.access != nil || r.accessErr != nil {
		return
	}
	t, err := pager.NewAccessTracker(r.workingSet(), r.ramRegions())
	if err == nil {
		if err = t.Mark(); err != nil {
			t.Close()
		}
	}
	r.mu.Lock()
	r.access, r.accessErr = t, err
	if err != nil {
		r.access = nil
	}
	r.mu.Unlock()
}

// prefetchUse measures the prefetch's use so far; nil with a reason when
// it is not measured (no working set, prefetch off, or it raced the guest).
func (r *Restored) prefetchUse() (*pager.PrefetchUse, string) {
	r.mu.Lock()
	t, err := r.access, r.accessErr
	r.mu.Unlock()
	switch {
	case err != nil:
		return nil, err.Error()
	case t != nil:
		u, err := t.Measure()
		if err != nil {
			return nil, err.Error()
		}
		return &u, ""
	case r.Paging == PagingEager || r.workingSet() == nil:
		return nil, ""
	case !r.prefetchComplete:
		return nil, "not measured: the prefetch was not complete before the vCPUs ran (--wait-prefetch=false, or it timed out)"
	}
	return nil, "not measured: the vCPUs have not run"
}

// closeAccess releases the tracker's /proc files.
func (r *Restored) closeAccess() error {
	r.mu.Lock()
	t := r.access
	r.access = nil
	r.mu.Unlock()
	if t == nil {
		return nil
	}
	return t.Close()
}
