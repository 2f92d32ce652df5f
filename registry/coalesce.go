package registry

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/smolvm/smolvm/format"
)

// DefaultMaxRun bounds one coalesced range request (the bytes a demand read
// of any frame in the run may wait for).
const DefaultMaxRun = 1 << 20

// groupRuns cuts frames (indexes into locs, in priority order) into runs:
// frames that lie back to back in one pack (no byte between them) become one
// run of at most maxRun bytes (a frame larger than maxRun is a run alone).
// Runs come in the order of their most urgent frame; frames within a run in
// pack order. A frame listed twice appears once. No byte outside the listed
// frames is ever part of a run.
func groupRuns(frames []int, locs []frameLoc, maxRun int64) [][]int {
	rank := make(map[int]int, len(frames))
	for r, i := range frames {
		if _, ok := rank[i]; !ok {
			rank[i] = r
		}
	}
	byPlace := make([]int, 0, len(rank))
	for i := range rank {
		byPlace = append(byPlace, i)
	}
	sortByPlace(byPlace, locs)
	var runs [][]int
	var cur []int
	var curEnd, curBytes int64
	for _, i := range byPlace {
		l := locs[i]
		if len(cur) > 0 && l.pack == locs[cur[0]].pack && l.offset == curEnd && curBytes+l.length <= maxRun {
			cur = append(cur, i)
		} else {
			if len(cur) > 0 {
				runs = append(runs, cur)
			}
			cur, curBytes = []int{i}, 0
		}
		curEnd, curBytes = l.offset+l.length, curBytes+l.length
	}
	if len(cur) > 0 {
		runs = append(runs, cur)
	}
	first := func(run []int) int {
		m := len(frames)
		for _, i := range run {
			m = min(m, rank[i])
		}
		return m
	}
	slices.SortStableFunc(runs, func(a, b []int) int { return first(a) - first(b) })
	return runs
}

// frameCall is one frame being fetched: waiters block on done.
type frameCall struct {
	done chan struct{}
	raw  []byte
	err  error
}

// prefetchRun is a planned run of the working set; taken once, by a
// prefetch worker or by the first demand read of one of its frames.
type prefetchRun struct {
	frames []int
	taken  bool
}

// setPlan installs the prefetch's runs so a demand read of a planned frame
// fetches its whole run at once.
func (s *frameSource) setPlan(runs [][]int) []*prefetchRun {
	out := make([]*prefetchRun, len(runs))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.plan == nil {
		s.plan = make(map[int]*prefetchRun)
	}
	for k, r := range runs {
		out[k] = &prefetchRun{frames: r}
		for _, i := range r {
			s.plan[i] = out[k]
		}
	}
	return out
}

// take marks run taken and claims its frames that are neither in flight nor
// cached; it returns them (in pack order) or nil when the run was taken
// already.
func (s *frameSource) take(run *prefetchRun) []int {
	s.mu.Lock()
	if run.taken {
		s.mu.Unlock()
		return nil
	}
	run.taken = true
	s.mu.Unlock()
	var want []int
	for _, i := range run.frames {
		if !s.local(i) {
			want = append(want, i)
		}
	}
	return s.claim(want)
}

// claim registers a call for each of frames not already in flight and
// returns those (the caller must complete them with fetchRuns).
func (s *frameSource) claim(frames []int) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		s.inflight = make(map[int]*frameCall)
	}
	var got []int
	for _, i := range frames {
		if _, busy := s.inflight[i]; busy {
			continue
		}
		s.inflight[i] = &frameCall{done: make(chan struct{})}
		got = append(got, i)
	}
	return got
}

// sortByPlace orders frames by pack and offset.
func sortByPlace(frames []int, locs []frameLoc) {
	slices.SortFunc(frames, func(a, b int) int {
		la, lb := locs[a], locs[b]
		if c := bytes.Compare(la.pack[:], lb.pack[:]); c != 0 {
			return c
		}
		return cmp.Compare(la.offset, lb.offset)
	})
}

// fetchRuns fetches claimed frames (in pack order): each stretch of them
// back to back in one pack is one range request; every frame is verified
// on its own and cached, and its call completed (with its own error when it
// does not match the TOC).
func (s *frameSource) fetchRuns(ctx context.Context, claimed []int, why string) {
	for len(claimed) > 0 {
		n := 1
		end := s.cfg.locs[claimed[0]].offset + s.cfg.locs[claimed[0]].length
		for n < len(claimed) {
			l := s.cfg.locs[claimed[n]]
			if l.pack != s.cfg.locs[claimed[0]].pack || l.offset != end {
				break
			}
			end += l.length
			n++
		}
		s.fetchRun(ctx, claimed[:n], why)
		claimed = claimed[n:]
	}
}

// fetchRunsCount is fetchRuns returning how many frames arrived verified.
func (s *frameSource) fetchRunsCount(ctx context.Context, claimed []int, why string) int {
	s.mu.Lock()
	calls := make([]*frameCall, len(claimed))
	for k, i := range claimed {
		calls[k] = s.inflight[i]
	}
	s.mu.Unlock()
	s.fetchRuns(ctx, claimed, why)
	n := 0
	for _, c := range calls {
		if c.err == nil {
			n++
		}
	}
	return n
}

// fetchRun fetches frames back to back in one pack with one range request.
func (s *frameSource) fetchRun(ctx context.Context, run []int, why string) {
	first := s.cfg.locs[run[0]]
	last := s.cfg.locs[run[len(run)-1]]
	total := last.offset + last.length - first.offset
	raws := make([][]byte, len(run))
	errs := make([]error, len(run))
	buf, err := s.p.fetchRange(ctx, first.pack.String(), first.offset, total, s.fetch, &s.net,
		reqRecord{Why: why, First: run[0], Frames: len(run)})
	for k, i := range run {
		f := s.cfg.fr.Frame(i)
		if err != nil {
			errs[k] = fmt.Errorf("registry: frame %d (%s): %w", i, f.Digest, err)
			continue
		}
		loc := s.cfg.locs[i]
		raw := buf[loc.offset-first.offset : loc.offset-first.offset+loc.length : loc.offset-first.offset+loc.length]
		if _, derr := format.DecodeFrame(f, raw, nil); derr != nil {
			errs[k] = fmt.Errorf("registry: %s: frame %d (%s) at offset %d of pack %s is not what the TOC says (tampered or damaged blob): %w",
				s.p.name(), i, f.Digest, loc.offset, loc.pack, derr)
			continue
		}
		s.cache.putFrame(f.Digest, raw)
		raws[k] = raw
	}
	if err == nil && len(run) > 1 {
		s.coalesced.Add(int64(len(run) - 1))
	}
	s.mu.Lock()
	calls := make([]*frameCall, len(run))
	for k, i := range run {
		calls[k] = s.inflight[i]
		delete(s.inflight, i)
	}
	s.mu.Unlock()
	for k, c := range calls {
		c.raw, c.err = raws[k], errs[k]
		close(c.done)
	}
}

// wait waits for frame i's call; retry reports that the fetcher's context
// ended while ours did not (fetch again ourselves).
func (s *frameSource) wait(ctx context.Context, c *frameCall) (raw []byte, retry bool, err error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if c.err != nil && (errors.Is(c.err, context.Canceled) || errors.Is(c.err, context.DeadlineExceeded)) && ctx.Err() == nil {
		return nil, true, nil
	}
	return c.raw, false, c.err
}
