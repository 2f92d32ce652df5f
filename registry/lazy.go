package registry

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
)

// LazyOptions tune Open.
type LazyOptions struct {
	Remote
	// CacheDir is the shared on-disk cache (default DefaultCacheDir()).
	CacheDir string
	Fetch    FetchOptions
	// Bundle options: memory cache size and spill directory, ReadAt bound.
	CacheBytes  int64
	SpillDir    string
	ReadTimeout time.Duration
}

// Lazy is a bundle served from a registry: manifest and TOC fetched once,
// frames fetched on demand with range requests into the shared cache.
type Lazy struct {
	*chunkstore.Bundle
	src     *frameSource
	timeout time.Duration

	prefetchOnce sync.Once
	stopPrefetch context.CancelFunc
	prefetchWG   sync.WaitGroup
	prefetched   atomic.Int64
}

// Open fetches ref's manifest and config only and returns the bundle, whose
// images read frames lazily. The bundle's manifest digest is the pushed
// bundle's. Close releases connections.
func Open(ctx context.Context, ref string, opts LazyOptions) (*Lazy, error) {
	p, err := openRepo(ref, opts.Remote)
	if err != nil {
		return nil, err
	}
	cache, err := openCache(opts.CacheDir)
	if err != nil {
		p.close()
		return nil, err
	}
	a, err := p.fetchArtifactCached(ctx, p.tag(), cache)
	if err != nil {
		p.close()
		return nil, err
	}
	l := &Lazy{src: &frameSource{p: p, cfg: a.cfg, cache: cache, fetch: opts.Fetch}, timeout: opts.ReadTimeout}
	if l.timeout <= 0 {
		l.timeout = chunkstore.DefaultReadTimeout
	}
	v := &lazyView{tailView: tailView{c: &a.cfg.Config}, l: l, byOffset: make(map[int64]int)}
	for i, f := range a.cfg.fr.Frames() {
		if !f.External {
			v.byOffset[f.Offset] = i
		}
	}
	b, err := chunkstore.OpenReader(v, a.cfg.BundleSize, chunkstore.Options{
		Store: l.src, CacheBytes: opts.CacheBytes, CacheDir: opts.SpillDir, ReadTimeout: opts.ReadTimeout})
	if err != nil {
		p.close()
		return nil, err
	}
	l.Bundle = b
	return l, nil
}

// NetStats reports the range requests made so far and where frames came
// from.
func (l *Lazy) NetStats() SourceStats { return l.src.stats() }

// Reference is REGISTRY/REPO:TAG.
func (l *Lazy) Reference() string { return l.src.p.name() }

// Prefetched counts frames the prefetch fetched.
func (l *Lazy) Prefetched() int64 { return l.prefetched.Load() }

// Close stops the prefetch and releases the bundle and idle connections.
func (l *Lazy) Close() error {
	l.prefetchOnce.Do(func() {}) // no prefetch may start now
	if l.stopPrefetch != nil {
		l.stopPrefetch()
	}
	l.prefetchWG.Wait()
	err := l.Bundle.Close()
	l.src.p.close()
	return err
}

// lazyView is the bundle file as a reader: header and tail from the config,
// an internal frame's bytes (read whole, as format.Reader.ReadRaw does) from
// the frame source.
type lazyView struct {
	tailView
	l        *Lazy
	byOffset map[int64]int
}

func (v *lazyView) ReadAt(p []byte, off int64) (int, error) {
	i, ok := v.byOffset[off]
	if !ok || off < v.c.TailOffset && int64(len(p)) != v.l.src.cfg.fr.Frame(i).Length {
		return v.tailView.ReadAt(p, off)
	}
	ctx, cancel := context.WithTimeout(context.Background(), v.l.timeout)
	defer cancel()
	raw, err := v.l.src.frame(ctx, i)
	if err != nil {
		return 0, err
	}
	if len(raw) != len(p) {
		return 0, fmt.Errorf("registry: frame %d: %d bytes, the TOC says %d", i, len(raw), len(p))
	}
	return copy(p, raw), nil
}
