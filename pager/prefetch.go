package pager

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/smolvm/smolvm/pager/uffd"
)

// prefetchAhead is how many fetched frames may wait to be filled: a batch
// of them is filled in guest address order (prefetch_sort.go).
const prefetchAhead = 64

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
}

// prefetchJob is one unit of prefetch work: every run of the plan in one
// frame (fetched once), or consecutive zero runs.
type prefetchJob struct {
	runs []*prefetchRun
	zero bool
	// fetch: the frame's bytes, filled by a fetcher; done closed then.
	data []byte
	err  error
	done chan struct{}
}

// maxZeroJob bounds the zero runs of one job.
const maxZeroJob = 64

// groupPrefetch gathers the plan's runs into jobs: every run of a frame
// joins that frame's job, in the order frames are first needed (a working
// set laid out at record time scatters its pages over its frames in
// first-touch order, and a list in first-touch order visits each frame
// many times); consecutive zero runs (at most maxZeroJob) form a job in
// place.
func groupPrefetch(runs []*prefetchRun) []*prefetchJob {
	type frameKey struct {
		img   any
		frame int32
	}
	var jobs []*prefetchJob
	byFrame := map[frameKey]*prefetchJob{}
	for _, p := range runs {
		if p.zero {
			if n := len(jobs); n > 0 && jobs[n-1].zero && len(jobs[n-1].runs) < maxZeroJob {
				jobs[n-1].runs = append(jobs[n-1].runs, p)
				continue
			}
			jobs = append(jobs, &prefetchJob{runs: []*prefetchRun{p}, zero: true})
			continue
		}
		k := frameKey{p.r.img, p.frame}
		if j := byFrame[k]; j != nil {
			j.runs = append(j.runs, p)
			continue
		}
		j := &prefetchJob{runs: []*prefetchRun{p}, done: make(chan struct{})}
		byFrame[k] = j
		jobs = append(jobs, j)
	}
	return jobs
}

// runPrefetch walks ws in order and fills the listed pages still missing
// (zero runs, and pages of fetched frames) itself, beside the fault loop's
// workers: a page both fill is copied once (the second copy finds it
// present). Frames are fetched by prefetchFetchers goroutines, at most
// prefetchAhead+prefetchFetchers frames ahead, in list order; frames in
// the cache are at hand at once. Filling here rather than handing each
// frame's pages to a fault-loop worker spares a cross-thread wake-up per
// frame, which the lab's overcommitted CPUs made cost more than the
// copies. Fetch errors skip the pages: a demand fault on them will report
// the error. Once the list is worked through the stats say so. It returns
// an error only when the client's memory is gone (errClientGone): the
// session ends then.
func (l *faultLoop) runPrefetch(ctx context.Context, ws *WorkingSet, logf func(string, ...any)) error {
	start := time.Now()
	jobs := groupPrefetch(l.planPrefetch(ws))
	planned := time.Since(start)
	var waited, filling time.Duration
	copies0 := l.c.copies.Load()

	// Fetchers take the jobs' frames in order; tokens bound how far they
	// get ahead of the filler (which returns a token per job it is done
	// with), so the job the filler waits for is always being fetched.
	fetchq := make(chan *prefetchJob)
	tokens := make(chan struct{}, prefetchAhead+prefetchFetchers)
	var wg sync.WaitGroup
	fctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	for range prefetchFetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range fetchq {
				first := j.runs[0]
				j.data, j.err = l.fetch(fctx, first.r.img, first.frame)
				close(j.done)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(fetchq)
		for _, j := range jobs {
			if j.zero {
				continue
			}
			select {
			case tokens <- struct{}{}:
			case <-fctx.Done():
				return
			}
			select {
			case fetchq <- j:
			case <-fctx.Done():
				return
			}
		}
	}()

	// Fetched jobs gather in a batch, filled in address order when it is
	// full, or when the next job's frame is not in yet while the guest is
	// faulting (then pages at hand must not wait for a slow fetch; while
	// the vCPUs wait for the prefetch, fuller batches mean fewer copies).
	var (
		batch       []*prefetchJob
		scratch     []byte
		batchFaults = l.c.faults.Load()
	)
	flush := func() error {
		t0 := time.Now()
		err := l.fillSorted(batch, &scratch, logf)
		filling += time.Since(t0)
		for _, j := range batch {
			j.data = nil
			<-tokens
		}
		batch = batch[:0]
		batchFaults = l.c.faults.Load()
		return err
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			return nil
		}
		if j.zero {
			if err := l.fillZeroJob(j); err != nil {
				return err
			}
			continue
		}
		select {
		case <-j.done:
		default:
			if l.c.faults.Load() != batchFaults {
				if err := flush(); err != nil {
					return err
				}
			}
			t0 := time.Now()
			select {
			case <-j.done:
			case <-ctx.Done():
				return nil
			}
			waited += time.Since(t0)
		}
		if j.err != nil {
			<-tokens
			if ctx.Err() == nil {
				logf("pager: prefetch %s frame %d: %v (left to demand faults)", j.runs[0].r.Artifact, j.runs[0].frame, j.err)
			}
			continue
		}
		batch = append(batch, j)
		if len(batch) >= prefetchAhead {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	l.c.markPrefetchDone()
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	logf("pager: prefetched %d pages (%d jobs) in %s (plan %s, waiting for frames %s, %d copies %s)",
		l.c.prefetched.Load(), len(jobs), ms(time.Since(start)), ms(planned), ms(waited), l.c.copies.Load()-copies0, ms(filling))
	return nil
}

// fillZeroJob fills a zero job's pages without waking anyone (no thread
// waits on a page nobody faulted). Only errClientGone matters to the
// caller; other failures are left to demand faults.
func (l *faultLoop) fillZeroJob(j *prefetchJob) error {
	for _, p := range j.runs {
		if err := l.fill(p.r, p.idx, p.n, nil, uffd.ZeroPageModeDontWake, true); errors.Is(err, errClientGone) {
			return err
		}
	}
	return nil
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
					slot: int64(e.Slot) + r.firstPage + i - e.Page})
				i = next
			}
		}
	}
	return runs
}
