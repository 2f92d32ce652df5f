package pager

import (
	"context"
	"sync"

	"github.com/smolvm/smolvm/format"
)

// prefetchAhead is how many fetched frames may wait for the fault loop.
const prefetchAhead = 4

// prefetchFetchers is how many frames the prefetch fetches at once (a
// lazily served bundle, e.g. from a registry, answers each with a round
// trip).
const prefetchFetchers = 4

// maxPrefetchZeroRun bounds one zero-page prefetch item.
const maxPrefetchZeroRun = 256

// prefetchRun is one planned piece of the prefetch: a run of zero pages,
// or pages [idx, idx+n) of region r stored in frame (from slot on).
type prefetchRun struct {
	r      *region
	idx, n int64
	zero   bool
	frame  int32
	slot   int64 // frame slot of page idx
	// fetch: the frame's bytes, filled by a fetcher; done closed then.
	data []byte
	err  error
	done chan struct{}
}

// runPrefetch walks ws in order and hands the fault loop the listed pages
// still missing (zero runs, and pages of fetched frames). Frames are fetched
// by prefetchFetchers goroutines, at most prefetchAhead+prefetchFetchers
// ahead of the loop, in list order. The loop only takes an item when no
// fault is pending, so demand faults always go first. Fetch errors skip the
// pages: a demand fault on them will report the error.
func (l *faultLoop) runPrefetch(ctx context.Context, ws *WorkingSet, logf func(string, ...any)) {
	send := func(it prefetchItem) bool {
		select {
		case l.prefetch <- it:
			l.signal()
			return true
		case <-ctx.Done():
			return false
		}
	}
	defer send(prefetchItem{last: true})
	runs := l.planPrefetch(ws)

	// Fetchers take the runs' frames in order; tokens bound how far they
	// get ahead of the sender (which returns a token per run it is done
	// with), so the run the sender waits for is always being fetched.
	jobs := make(chan *prefetchRun)
	tokens := make(chan struct{}, prefetchAhead+prefetchFetchers)
	var wg sync.WaitGroup
	fctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	for range prefetchFetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				p.data, p.err = l.fetch(fctx, p.r.img, p.frame)
				close(p.done)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(jobs)
		for _, p := range runs {
			if p.zero {
				continue
			}
			select {
			case tokens <- struct{}{}:
			case <-fctx.Done():
				return
			}
			select {
			case jobs <- p:
			case <-fctx.Done():
				return
			}
		}
	}()

	for _, p := range runs {
		if ctx.Err() != nil {
			return
		}
		if p.zero {
			if !send(prefetchItem{r: p.r, idx: p.idx, n: p.n}) {
				return
			}
			continue
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
		<-tokens
		if p.err != nil {
			if ctx.Err() == nil {
				logf("pager: prefetch %s frame %d: %v (left to demand faults)", p.r.Artifact, p.frame, p.err)
			}
			continue
		}
		from, to := p.slot*format.PageSize, (p.slot+p.n)*format.PageSize
		if from < 0 || to > int64(len(p.data)) {
			logf("pager: prefetch %s frame %d: slots %d..%d do not fit its %d bytes (left to demand faults)", p.r.Artifact, p.frame, p.slot, p.slot+p.n, len(p.data))
			continue
		}
		// Only the listed pages of the frame: a working set recorded page
		// by page names exactly what the guest touched.
		if !send(prefetchItem{r: p.r, idx: p.idx, n: p.n, data: p.data[from:to]}) {
			return
		}
		p.data = nil
	}
}

// planPrefetch lists the runs of ws's pages that are still missing, in
// order: zero runs (at most maxPrefetchZeroRun pages) and runs within one
// frame.
func (l *faultLoop) planPrefetch(ws *WorkingSet) []*prefetchRun {
	var runs []*prefetchRun
	for _, pr := range ws.Ranges {
		for _, r := range l.regions {
			if r.Artifact != pr.Artifact {
				continue
			}
			idx, n := r.clip(pr.Page, pr.Count)
			end := idx + n
			for i := idx; i < end; {
				if r.isFilled(i) {
					i++
					continue
				}
				e, ok := r.img.Locate(r.firstPage + i)
				if !ok {
					j := i + 1
					for j < end && j-i < maxPrefetchZeroRun && !r.isFilled(j) {
						if _, ok := r.img.Locate(r.firstPage + j); ok {
							break
						}
						j++
					}
					runs = append(runs, &prefetchRun{r: r, idx: i, n: j - i, zero: true})
					i = j
					continue
				}
				next := min(end, e.End()-r.firstPage)
				runs = append(runs, &prefetchRun{r: r, idx: i, n: next - i, frame: e.Frame,
					slot: int64(e.Slot) + r.firstPage + i - e.Page, done: make(chan struct{})})
				i = next
			}
		}
	}
	return runs
}
