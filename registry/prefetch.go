package registry

import (
	"context"
	"sync"
	"time"
)

// demandGate lets demand fetches go first: a prefetch waits while any
// demand fetch is on the network.
type demandGate struct {
	mu      sync.Mutex
	active  int
	changed chan struct{} // closed and replaced when active drops to 0
}

func (g *demandGate) begin() {
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
}

func (g *demandGate) end() {
	g.mu.Lock()
	g.active--
	if g.active == 0 && g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
	g.mu.Unlock()
}

// idle waits until no demand fetch is active (or ctx ends).
func (g *demandGate) idle(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.active == 0 {
			g.mu.Unlock()
			return nil
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// StartPrefetch fetches the frames holding the manifest's working set
// (memory pages in first-touch order) into the shared frame cache in the
// background, with workers goroutines (default 2). Frames back to back in a
// pack are fetched together, one range request per run of at most
// DefaultMaxRun bytes (nothing but working-set frames is fetched), runs in
// the order of their first-touched frame; a demand read of a planned frame
// takes its whole run at once. Each run waits while a demand read is on the
// network. Close stops it. Frames already cached are skipped; failures are
// left for the demand read to report.
func (l *Lazy) StartPrefetch(workers int) {
	if workers <= 0 {
		workers = 2
	}
	l.prefetchOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		l.stopPrefetch = cancel
		var frames []int
		for _, i := range l.workingSetFrames() {
			if !l.src.local(i) {
				frames = append(frames, i)
			}
		}
		runs := l.src.setPlan(groupRuns(frames, l.src.cfg.locs, DefaultMaxRun))
		next := make(chan *prefetchRun)
		l.prefetchWG.Add(workers + 1)
		go func() {
			defer l.prefetchWG.Done()
			defer close(next)
			for _, r := range runs {
				select {
				case next <- r:
				case <-ctx.Done():
					return
				}
			}
		}()
		for range workers {
			go func() {
				defer l.prefetchWG.Done()
				for r := range next {
					if l.src.gate.idle(ctx) != nil {
						return
					}
					claimed := l.src.take(r)
					if len(claimed) == 0 {
						continue
					}
					l.src.sortByPlace(claimed)
					fctx, c := context.WithTimeout(ctx, 2*time.Minute)
					l.prefetched.Add(int64(l.src.fetchRunsCount(fctx, claimed, "prefetch")))
					c()
				}
			}()
		}
	})
}

// PrefetchWait waits until the prefetch has finished or ctx ends.
func (l *Lazy) PrefetchWait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { l.prefetchWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// workingSetFrames lists the memory frames of the working set, first-touch
// order, each once.
func (l *Lazy) workingSetFrames() []int { return l.Manifest().WorkingSetFrames() }
