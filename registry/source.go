package registry

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/smolvm/smolvm/format"
)

// frameSource serves an artifact's frames by digest (a chunkstore.Store):
// from the frame cache, from a cached pack, or with a range request to the
// registry; every frame is verified against its page digests before it is
// returned or cached.
type frameSource struct {
	p     *repo
	cfg   *parsedConfig
	cache *Cache
	fetch FetchOptions
	net   netCounters

	gate demandGate

	mu       sync.Mutex
	inflight map[int]*frameCall   // frames being fetched
	plan     map[int]*prefetchRun // the working-set prefetch's runs by frame

	cacheHits, packHits, coalesced atomic.Int64
}

// SourceStats counts where frames came from.
type SourceStats struct {
	NetStats
	FrameCacheHits int64 `json:"frame_cache_hits"`
	PackCacheHits  int64 `json:"pack_cache_hits"`
	// Coalesced counts frames that rode along in another frame's range
	// request (frames fetched = requests - failures + coalesced).
	Coalesced int64 `json:"coalesced"`
}

func (s *frameSource) stats() SourceStats {
	return SourceStats{NetStats: s.net.snapshot(), FrameCacheHits: s.cacheHits.Load(), PackCacheHits: s.packHits.Load(), Coalesced: s.coalesced.Load()}
}

func (s *frameSource) Has(ctx context.Context, d format.Digest) (bool, error) {
	_, ok := s.cfg.fr.FrameIndex(d)
	return ok, nil
}

func (s *frameSource) Get(ctx context.Context, d format.Digest) ([]byte, error) {
	i, ok := s.cfg.fr.FrameIndex(d)
	if !ok {
		return nil, fmt.Errorf("registry: frame %s: %w in %s", d, ErrNotFound, s.p.name())
	}
	return s.frame(ctx, i)
}

// frame returns frame i's raw bytes, verified, for a demand read: from the
// frame cache, a cached pack, a fetch already in flight (one request per
// frame however many readers want it), or the network. A read of a frame
// the working-set prefetch planned fetches its whole run (frames back to
// back in the pack) with one range request. It holds the gate prefetches
// wait on while it is on the network.
func (s *frameSource) frame(ctx context.Context, i int) ([]byte, error) {
	for {
		if raw, ok := s.cached(i); ok {
			return raw, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		c, run := s.inflight[i], s.plan[i]
		s.mu.Unlock()
		if c != nil {
			raw, retry, err := s.wait(ctx, c)
			if retry {
				continue
			}
			return raw, err
		}
		why := "demand"
		var claimed []int
		if run != nil {
			why = "demand-run"
			claimed = s.take(run)
		}
		if !slices.Contains(claimed, i) {
			claimed = append(claimed, s.claim([]int{i})...)
		}
		s.mu.Lock()
		c = s.inflight[i]
		s.mu.Unlock()
		if !slices.Contains(claimed, i) || c == nil {
			if len(claimed) > 0 { // not ours after all: complete what we took
				s.sortByPlace(claimed)
				s.fetchRuns(ctx, claimed, why)
			}
			continue // someone else fetches i: wait for it
		}
		s.sortByPlace(claimed)
		s.gate.begin()
		s.fetchRuns(ctx, claimed, why)
		s.gate.end()
		<-c.done
		return c.raw, c.err
	}
}

// cached returns frame i from the frame cache or a cached pack, verified; a
// damaged cache file is removed.
func (s *frameSource) cached(i int) ([]byte, bool) {
	f := s.cfg.fr.Frame(i)
	loc := s.cfg.locs[i]
	if raw, ok := s.cache.readFrame(f.Digest); ok {
		if _, err := format.DecodeFrame(f, raw, nil); err == nil {
			s.cacheHits.Add(1)
			return raw, true
		}
		s.cache.dropFrame(f.Digest)
	}
	if raw, ok := s.cache.readPackRange(loc.pack, loc.offset, loc.length); ok {
		if _, err := format.DecodeFrame(f, raw, nil); err == nil {
			s.packHits.Add(1)
			return raw, true
		}
		s.cache.dropPack(loc.pack) // damaged since it was checked: fetch anew
	}
	return nil, false
}

// local reports whether frame i is in the frame cache or a cached pack
// (not verified: reading it checks).
func (s *frameSource) local(i int) bool {
	loc := s.cfg.locs[i]
	return s.cache.hasFrame(s.cfg.fr.Frame(i).Digest) || s.cache.hasPack(loc.pack, loc.size)
}

// sortByPlace orders frames by pack and offset.
func (s *frameSource) sortByPlace(frames []int) { sortByPlace(frames, s.cfg.locs) }
