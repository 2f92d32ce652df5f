package registry

import (
	"context"
	"fmt"
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

	cacheHits, packHits atomic.Int64
}

// SourceStats counts where frames came from.
type SourceStats struct {
	NetStats
	FrameCacheHits int64 `json:"frame_cache_hits"`
	PackCacheHits  int64 `json:"pack_cache_hits"`
}

func (s *frameSource) stats() SourceStats {
	return SourceStats{NetStats: s.net.snapshot(), FrameCacheHits: s.cacheHits.Load(), PackCacheHits: s.packHits.Load()}
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

// frame returns frame i's raw bytes, verified, for a demand read.
func (s *frameSource) frame(ctx context.Context, i int) ([]byte, error) {
	return s.frameFor(ctx, i, false)
}

// frameFor returns frame i's raw bytes, verified. A demand fetch holds the
// gate prefetches wait on.
func (s *frameSource) frameFor(ctx context.Context, i int, prefetch bool) ([]byte, error) {
	f := s.cfg.fr.Frame(i)
	loc := s.cfg.locs[i]
	if raw, ok := s.cache.readFrame(f.Digest); ok {
		if _, err := format.DecodeFrame(f, raw, nil); err == nil {
			s.cacheHits.Add(1)
			return raw, nil
		}
		s.cache.dropFrame(f.Digest)
	}
	if raw, ok := s.cache.readPackRange(loc.pack, loc.offset, loc.length); ok {
		if _, err := format.DecodeFrame(f, raw, nil); err == nil {
			s.packHits.Add(1)
			return raw, nil
		}
		s.cache.dropPack(loc.pack) // damaged since it was checked: fetch anew
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !prefetch {
		s.gate.begin()
		defer s.gate.end()
	}
	raw, err := s.p.fetchRange(ctx, loc.pack.String(), loc.offset, loc.length, s.fetch, &s.net)
	if err != nil {
		return nil, fmt.Errorf("registry: frame %d (%s): %w", i, f.Digest, err)
	}
	if _, err := format.DecodeFrame(f, raw, nil); err != nil {
		return nil, fmt.Errorf("registry: %s: frame %d (%s) at offset %d of pack %s is not what the TOC says (tampered or damaged blob): %w",
			s.p.name(), i, f.Digest, loc.offset, loc.pack, err)
	}
	s.cache.putFrame(f.Digest, raw)
	return raw, nil
}
