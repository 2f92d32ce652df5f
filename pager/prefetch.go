package pager

import (
	"context"
	"errors"
	"sync"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager/uffd"
)

// prefetchAhead is how many fetched frames may wait to be filled.
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
}

// prefetchJob is one unit of prefetch work: consecutive runs of the plan
// that share a frame (fetched once), or consecutive zero runs. One job is
// one item for the fault loop: a working set laid out at record time puts
// many single, scattered pages into each frame, and handing the loop a
// page at a time cost a wake-up per page.
type prefetchJob struct {
	runs []*prefetchRun
	zero bool
	// fetch: the frame's bytes, filled by a fetcher; done closed then.
	data []byte
	err  error
	done chan struct{}
}

// maxZeroJob bounds the zero runs of one job (they are filled one
// UFFDIO_ZEROPAGE each, between demand faults).
const maxZeroJob = 64

// groupPrefetch joins consecutive runs of one frame (or consecutive zero
// runs) into jobs, in plan order.
func groupPrefetch(runs []*prefetchRun) []*prefetchJob {
	var jobs []*prefetchJob
	for _, p := range runs {
		if n := len(jobs); n > 0 {
			j := jobs[n-1]
			first := j.runs[0]
			switch {
			case p.zero && j.zero && len(j.runs) < maxZeroJob,
				!p.zero && !j.zero && p.r.img == first.r.img && p.frame == first.frame:
				j.runs = append(j.runs, p)
				continue
			}
		}
		j := &prefetchJob{runs: []*prefetchRun{p}, zero: p.zero}
		if !p.zero {
			j.done = make(chan struct{})
		}
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
	jobs := groupPrefetch(l.planPrefetch(ws))

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

	for _, j := range jobs {
		if ctx.Err() != nil {
			return nil
		}
		if !j.zero {
			select {
			case <-j.done:
			case <-ctx.Done():
				return nil
			}
			<-tokens
			if j.err != nil {
				if ctx.Err() == nil {
					logf("pager: prefetch %s frame %d: %v (left to demand faults)", j.runs[0].r.Artifact, j.runs[0].frame, j.err)
				}
				continue
			}
		}
		if err := l.fillJob(j, logf); err != nil {
			return err
		}
		j.data = nil
	}
	l.c.markPrefetchDone()
	return nil
}

// fillJob fills a job's listed pages without waking anyone (no thread
// waits on a page nobody faulted): zero runs, or the runs' slots of the
// fetched frame. Only errClientGone matters to the caller; other failures
// are left to demand faults.
func (l *faultLoop) fillJob(j *prefetchJob, logf func(string, ...any)) error {
	for _, p := range j.runs {
		var err error
		if j.zero {
			err = l.fill(p.r, p.idx, p.n, nil, uffd.ZeroPageModeDontWake, true)
		} else {
			// Only the listed pages of the frame: a working set recorded
			// page by page names exactly what the guest touched.
			from, to := p.slot*format.PageSize, (p.slot+p.n)*format.PageSize
			if from < 0 || to > int64(len(j.data)) {
				logf("pager: prefetch %s frame %d: slots %d..%d do not fit its %d bytes (left to demand faults)", p.r.Artifact, p.frame, p.slot, p.slot+p.n, len(j.data))
				continue
			}
			err = l.fill(p.r, p.idx, p.n, j.data[from:to], uffd.CopyModeDontWake, true)
		}
		if errors.Is(err, errClientGone) {
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
