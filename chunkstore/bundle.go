package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/smolvm/smolvm/format"
)

// Options tune Open.
type Options struct {
	// StoreDir is the directory store holding a thin bundle's external
	// frames (ignored when Store is set).
	StoreDir string
	// Store, when set, serves external frames instead of StoreDir.
	Store Store
	// CacheBytes bounds the memory cache of decompressed frames shared by
	// the bundle's images: 0 means DefaultCacheBytes, negative means none.
	CacheBytes int64
	// CacheDir, when set, is the cache's spill directory.
	CacheDir string
	// ReadTimeout bounds one ReadAt (which has no context); 0 means
	// DefaultReadTimeout.
	ReadTimeout time.Duration
}

// Defaults for Options.
const (
	DefaultCacheBytes  = 256 << 20
	DefaultReadTimeout = 2 * time.Minute
)

// Bundle is an opened .smolmachine: its manifest and frame table, and images
// reading through one shared, verifying cache. Safe for concurrent use.
type Bundle struct {
	r       *format.Reader
	file    *os.File // nil when opened from an io.ReaderAt
	cache   *Cache
	src     Store
	timeout time.Duration

	mu     sync.Mutex
	images map[string]*image // built once per artifact
}

// Open opens the bundle file at path.
func Open(path string, opts Options) (*Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chunkstore: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("chunkstore: %w", err)
	}
	b, err := OpenReader(f, st.Size(), opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.file = f
	return b, nil
}

// OpenReader opens a bundle of size bytes read through r (a file, or HTTP
// range requests). Close does not close r.
func OpenReader(r io.ReaderAt, size int64, opts Options) (*Bundle, error) {
	fr, err := format.Open(r, size)
	if err != nil {
		return nil, err
	}
	ext := opts.Store
	if ext == nil && opts.StoreDir != "" {
		ds, err := OpenDir(opts.StoreDir)
		if err != nil {
			return nil, err
		}
		ext = ds
	}
	if ext == nil {
		for i := range fr.Frames() {
			if fr.Frame(i).External {
				return nil, fmt.Errorf("chunkstore: thin bundle (frame %d, %s, is external): give the store directory (--store)", i, fr.Frame(i).Digest)
			}
		}
	}
	cb := opts.CacheBytes
	if cb == 0 {
		cb = DefaultCacheBytes
	}
	src := &bundleSource{r: fr, ext: ext}
	b := &Bundle{r: fr, src: src, cache: NewCache(src, CacheOptions{MaxBytes: cb, SpillDir: opts.CacheDir}), timeout: opts.ReadTimeout}
	if b.timeout <= 0 {
		b.timeout = DefaultReadTimeout
	}
	return b, nil
}

// Close releases the bundle file.
func (b *Bundle) Close() error {
	if b.file != nil {
		return b.file.Close()
	}
	return nil
}

// Format gives the underlying reader (frame table, trailer, stats).
func (b *Bundle) Format() *format.Reader { return b.r }

// Manifest returns the manifest (do not modify).
func (b *Bundle) Manifest() *format.Manifest { return b.r.Manifest() }

// Stats snapshots the shared cache's counters.
func (b *Bundle) Stats() Stats { return b.cache.Stats() }

// Source is the store that serves this bundle's raw frames by digest (the
// file for internal frames, the store for external ones).
func (b *Bundle) Source() Store { return b.src }

// Frame returns frame idx verified and decompressed, through the cache.
func (b *Bundle) Frame(ctx context.Context, idx int) ([]byte, error) {
	if idx < 0 || idx >= len(b.r.Frames()) {
		return nil, fmt.Errorf("chunkstore: frame %d: %w (bundle has %d)", idx, ErrNotFound, len(b.r.Frames()))
	}
	return b.cache.Frame(ctx, b.r.Frame(idx))
}

// Image returns the named artifact as an Image (the same one on every call).
func (b *Bundle) Image(name string) (Image, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if im, ok := b.images[name]; ok {
		return im, nil
	}
	a, err := b.r.Artifact(name)
	if err != nil {
		return nil, fmt.Errorf("chunkstore: %w", err)
	}
	im := &image{b: b, a: a, byFrame: make(map[int32][]format.Extent)}
	for _, e := range a.Extents {
		im.byFrame[e.Frame] = append(im.byFrame[e.Frame], e)
	}
	if b.images == nil {
		b.images = make(map[string]*image)
	}
	b.images[name] = im
	return im, nil
}

// bundleSource serves raw frames: internal ones from the bundle file,
// external ones from ext.
type bundleSource struct {
	r   *format.Reader
	ext Store
}

func (s *bundleSource) Get(ctx context.Context, d format.Digest) ([]byte, error) {
	i, ok := s.r.FrameIndex(d)
	if !ok {
		return nil, fmt.Errorf("chunkstore: frame %s: %w in the bundle", d, ErrNotFound)
	}
	if s.r.Frame(i).External {
		if s.ext == nil {
			return nil, fmt.Errorf("chunkstore: frame %d (%s) is external and no store was given: %w", i, d, ErrNotFound)
		}
		return s.ext.Get(ctx, d)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.r.ReadRaw(i, nil)
}

func (s *bundleSource) Has(ctx context.Context, d format.Digest) (bool, error) {
	i, ok := s.r.FrameIndex(d)
	if !ok {
		return false, nil
	}
	if s.r.Frame(i).External {
		if s.ext == nil {
			return false, nil
		}
		return s.ext.Has(ctx, d)
	}
	return true, nil
}

// CorruptError reports a frame that failed verification while reading an
// artifact: which artifact, the image offset of the frame's first page in
// it, the frame's index and the expected and actual digests.
type CorruptError struct {
	Artifact string
	Offset   int64
	Frame    int
	Err      error // wraps ErrCorrupt; a *format.FrameError when from a digest check
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("chunkstore: %s at offset %#x: frame %d: %v", e.Artifact, e.Offset, e.Frame, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Digests returns the expected and actual frame digests when known.
func (e *CorruptError) Digests() (expected, actual format.Digest, ok bool) {
	var fe *format.FrameError
	if errors.As(e.Err, &fe) {
		return fe.Expected, fe.Actual, true
	}
	return expected, actual, false
}

// frameOwners maps each frame to the first (artifact, extent) using it, for
// error messages about frames read outside an image.
func (b *Bundle) frameOwners() map[int32]owner {
	m := make(map[int32]owner)
	arts := b.r.Manifest().Artifacts
	for i := range arts {
		for _, e := range arts[i].Extents {
			if _, ok := m[e.Frame]; !ok {
				m[e.Frame] = owner{arts[i].Name, e}
			}
		}
	}
	return m
}

type owner struct {
	artifact string
	e        format.Extent
}

// sortedFrames returns the frame indexes an artifact uses, in first-use order.
func sortedFrames(es []format.Extent) []int32 {
	seen := make(map[int32]bool)
	var out []int32
	for _, e := range es {
		if !seen[e.Frame] {
			seen[e.Frame] = true
			out = append(out, e.Frame)
		}
	}
	return out
}
