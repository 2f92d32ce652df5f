package chunkstore

import (
	"container/list"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"

	"github.com/smolvm/smolvm/format"
)

// CacheOptions size a Cache.
type CacheOptions struct {
	// MaxBytes bounds the decompressed frames held in memory; 0 or less
	// keeps none (every request fetches, still singleflight).
	MaxBytes int64
	// SpillDir, when set, receives frames evicted from memory (verified,
	// decompressed); a later miss reads them back and re-verifies them
	// before use. The caller owns the directory.
	SpillDir string
}

// Cache is the decorator every read goes through: it fetches a frame's raw
// bytes from a Store, verifies and decompresses them (format.DecodeFrame),
// and keeps the result in a size-bounded LRU. Concurrent requests for one
// frame fetch it once. A frame that fails verification is not remembered:
// the next request fetches it again. Safe for concurrent use.
type Cache struct {
	src  Store
	opts CacheOptions
	ctr  counters

	mu       sync.Mutex
	lru      *list.List // of *cacheEntry, most recent first
	entries  map[format.Digest]*list.Element
	used     int64
	inflight map[format.Digest]*fetchCall
}

type cacheEntry struct {
	d    format.Digest
	data []byte
}

type fetchCall struct {
	done chan struct{}
	data []byte
	err  error
}

// NewCache returns a cache over src.
func NewCache(src Store, opts CacheOptions) *Cache {
	return &Cache{src: src, opts: opts, lru: list.New(),
		entries: make(map[format.Digest]*list.Element), inflight: make(map[format.Digest]*fetchCall)}
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := c.ctr.snapshot()
	c.mu.Lock()
	s.CachedFrames, s.CachedBytes = int64(c.lru.Len()), c.used
	c.mu.Unlock()
	return s
}

// Frame returns frame f verified and decompressed (f.Size() bytes). The
// slice is shared: callers must not modify it. Errors from verification
// wrap ErrCorrupt (a *format.FrameError inside).
func (c *Cache) Frame(ctx context.Context, f *format.FrameInfo) ([]byte, error) {
	for {
		c.mu.Lock()
		if el, ok := c.entries[f.Digest]; ok {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			c.ctr.hits.Add(1)
			return el.Value.(*cacheEntry).data, nil
		}
		if call, ok := c.inflight[f.Digest]; ok {
			c.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			// The leader's own cancellation is not ours: try again.
			if call.err != nil && (errors.Is(call.err, context.Canceled) || errors.Is(call.err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue
			}
			return call.data, call.err
		}
		call := &fetchCall{done: make(chan struct{})}
		c.inflight[f.Digest] = call
		c.mu.Unlock()
		c.ctr.misses.Add(1)

		call.data, call.err = c.fetch(ctx, f)

		c.mu.Lock()
		delete(c.inflight, f.Digest)
		var evicted []*cacheEntry
		if call.err == nil {
			evicted = c.insertLocked(f.Digest, call.data)
		}
		c.mu.Unlock()
		close(call.done)
		c.spill(evicted)
		return call.data, call.err
	}
}

// fetch gets, verifies and decompresses one frame.
func (c *Cache) fetch(ctx context.Context, f *format.FrameInfo) ([]byte, error) {
	if c.opts.SpillDir != "" {
		if b, err := os.ReadFile(c.spillPath(f.Digest)); err == nil {
			if format.VerifyPages(f, b) == nil {
				c.ctr.spillHits.Add(1)
				return b, nil
			}
			os.Remove(c.spillPath(f.Digest))
		}
	}
	raw, err := c.src.Get(ctx, f.Digest)
	if err != nil {
		return nil, err
	}
	c.ctr.framesFetched.Add(1)
	c.ctr.bytesFetched.Add(int64(len(raw)))
	data, err := format.DecodeFrame(f, raw, nil)
	if err != nil {
		c.ctr.verifyFailures.Add(1)
		return nil, err
	}
	c.ctr.bytesDecoded.Add(int64(len(data)))
	return data, nil
}

func (c *Cache) insertLocked(d format.Digest, data []byte) (evicted []*cacheEntry) {
	if int64(len(data)) > c.opts.MaxBytes {
		return nil
	}
	c.entries[d] = c.lru.PushFront(&cacheEntry{d: d, data: data})
	c.used += int64(len(data))
	for c.used > c.opts.MaxBytes {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.d)
		c.used -= int64(len(e.data))
		evicted = append(evicted, e)
	}
	return evicted
}

func (c *Cache) spillPath(d format.Digest) string {
	return filepath.Join(c.opts.SpillDir, d.Hex())
}

// spill writes evicted frames to the spill directory (best effort: a
// failed write only costs a later fetch).
func (c *Cache) spill(es []*cacheEntry) {
	if c.opts.SpillDir == "" {
		return
	}
	for _, e := range es {
		p := c.spillPath(e.d)
		if _, err := os.Stat(p); err == nil {
			continue
		}
		_ = writeAtomic(p, e.data) // best effort: a miss refetches
	}
}
