package fusefs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// errFakeCorrupt stands in for chunkstore.ErrCorrupt in the fake.
var errFakeCorrupt = errors.New("frame failed verification")

// fakeSpec describes a deterministic bundle: the child process that serves
// it and the parent that checks reads derive the same bytes from it.
type fakeSpec struct {
	Images     []fakeImageSpec   `json:"images"`
	Files      map[string]string `json:"files"`
	FramePages int               `json:"frame_pages"`
	// FetchDelay is slept in every frame fetch, to widen races (fake only).
	FetchDelay time.Duration `json:"fetch_delay"`
	// Real: serve a real bundle written from the spec (writeSpecBundle)
	// through chunkstore instead of the fake; BundlePath is where.
	Real       bool   `json:"real"`
	BundlePath string `json:"bundle_path"`
	CacheBytes int64  `json:"cache_bytes"`
}

type fakeImageSpec struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Seed uint64 `json:"seed"`
	// Corrupt lists frame numbers (within this image) that fail verification.
	Corrupt []int `json:"corrupt"`
}

// pageIsZero: runs of 16 zero pages every 80 pages, shifted by the seed.
func pageIsZero(seed uint64, page int64) bool { return ((page+int64(seed%80))/16)%5 == 4 }

// fillPage writes page's content (4096 bytes, or fewer for the last page).
func fillPage(seed uint64, page int64, dst []byte) {
	if pageIsZero(seed, page) {
		clear(dst)
		return
	}
	x := seed*0x9e3779b97f4a7c15 ^ uint64(page)*0xbf58476d1ce4e5b9
	var w [8]byte
	for i := 0; i < len(dst); i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		binary.LittleEndian.PutUint64(w[:], z)
		copy(dst[i:], w[:])
	}
}

// expectedBytes is what the mount must return for [off, off+n) of an image.
func expectedBytes(s fakeImageSpec, off, n int64) []byte {
	if off+n > s.Size {
		n = max(0, s.Size-off)
	}
	out := make([]byte, n)
	page := make([]byte, format.PageSize)
	for pos := off; pos < off+n; {
		p := pos / format.PageSize
		fillPage(s.Seed, p, page)
		in := pos - p*format.PageSize
		pos += int64(copy(out[pos-off:], page[in:]))
	}
	return out
}

// fakeStore is the shared frame cache of a fake bundle: every frame fetched
// at most once, concurrent fetches of one frame joined.
type fakeStore struct {
	delay      time.Duration
	mu         sync.Mutex
	frames     map[int][]byte
	inflight   map[int]chan struct{}
	fetched    atomic.Int64
	fetchedB   atomic.Int64
	hits       atomic.Int64
	verifyFail atomic.Int64
}

type fakeStoreStats struct {
	FramesFetched int64 `json:"frames_fetched"`
	BytesFetched  int64 `json:"bytes_fetched"`
	CacheHits     int64 `json:"cache_hits"`
	VerifyFailed  int64 `json:"verify_failures"`
}

type fakeBundle struct {
	images []chunkstore.Image
	files  map[string][]byte
	store  *fakeStore
}

func (b *fakeBundle) Images() []chunkstore.Image { return b.images }
func (b *fakeBundle) Files() map[string][]byte   { return b.files }
func (b *fakeBundle) Stats() any {
	return fakeStoreStats{b.store.fetched.Load(), b.store.fetchedB.Load(), b.store.hits.Load(), b.store.verifyFail.Load()}
}

func newFakeBundle(spec fakeSpec) *fakeBundle {
	st := &fakeStore{delay: spec.FetchDelay, frames: map[int][]byte{}, inflight: map[int]chan struct{}{}}
	b := &fakeBundle{files: map[string][]byte{}, store: st}
	base := 0
	for _, is := range spec.Images {
		img := newFakeImage(is, spec.FramePages, base, st)
		base += img.nframes
		b.images = append(b.images, img)
	}
	for k, v := range spec.Files {
		b.files[k] = []byte(v)
	}
	return b
}

// fakeImage packs an image's non-zero pages, in order, into frames of
// FramePages slots numbered from base.
type fakeImage struct {
	spec    fakeImageSpec
	fp      int
	base    int
	ord     []int32 // page -> ordinal among non-zero pages, -1 for zero
	byOrd   []int64 // ordinal -> page
	nframes int
	extents []format.Extent
	corrupt map[int]bool
	st      *fakeStore
}

var _ chunkstore.Image = (*fakeImage)(nil)

func newFakeImage(s fakeImageSpec, fp, base int, st *fakeStore) *fakeImage {
	pages := (s.Size + format.PageSize - 1) / format.PageSize
	img := &fakeImage{spec: s, fp: fp, base: base, ord: make([]int32, pages), corrupt: map[int]bool{}, st: st}
	n := int32(0)
	for p := int64(0); p < pages; p++ {
		if pageIsZero(s.Seed, p) {
			img.ord[p] = -1
			continue
		}
		img.ord[p] = n
		img.byOrd = append(img.byOrd, p)
		e := format.Extent{Page: p, Count: 1, Frame: int32(base) + n/int32(fp), Slot: n % int32(fp)}
		if k := len(img.extents) - 1; k >= 0 && img.extents[k].End() == p && img.extents[k].Frame == e.Frame {
			img.extents[k].Count++
		} else {
			img.extents = append(img.extents, e)
		}
		n++
	}
	img.nframes = int((n + int32(fp) - 1) / int32(fp))
	for _, c := range s.Corrupt {
		img.corrupt[base+c] = true
	}
	return img
}

func (m *fakeImage) Name() string                     { return m.spec.Name }
func (m *fakeImage) Size() int64                      { return m.spec.Size }
func (m *fakeImage) Extents() []format.Extent         { return m.extents }
func (m *fakeImage) FrameExtents(int) []format.Extent { return nil }

func (m *fakeImage) Locate(page int64) (format.Extent, bool) {
	if page < 0 || page >= int64(len(m.ord)) || m.ord[page] < 0 {
		return format.Extent{}, false
	}
	o := m.ord[page]
	return format.Extent{Page: page, Count: 1, Frame: int32(m.base) + o/int32(m.fp), Slot: o % int32(m.fp)}, true
}

func (m *fakeImage) Frame(ctx context.Context, frame int) ([]byte, error) {
	st := m.st
	for {
		st.mu.Lock()
		if f, ok := st.frames[frame]; ok {
			st.mu.Unlock()
			st.hits.Add(1)
			return f, nil
		}
		if ch, ok := st.inflight[frame]; ok {
			st.mu.Unlock()
			<-ch
			st.mu.Lock()
			_, ok := st.frames[frame]
			st.mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("fake: frame %d of %s: %w", frame, m.spec.Name, errFakeCorrupt)
			}
			continue
		}
		ch := make(chan struct{})
		st.inflight[frame] = ch
		st.mu.Unlock()

		time.Sleep(st.delay)
		st.fetched.Add(1)
		st.fetchedB.Add(int64(m.fp) * format.PageSize)
		var data []byte
		if m.corrupt[frame] {
			st.verifyFail.Add(1)
		} else {
			data = make([]byte, m.fp*format.PageSize)
			first := (frame - m.base) * m.fp
			for o := first; o < min(first+m.fp, len(m.byOrd)); o++ {
				fillPage(m.spec.Seed, m.byOrd[o], data[(o-first)*format.PageSize:][:format.PageSize])
			}
		}
		st.mu.Lock()
		if data != nil {
			st.frames[frame] = data
		}
		delete(st.inflight, frame)
		close(ch)
		st.mu.Unlock()
		if data == nil {
			return nil, fmt.Errorf("fake: frame %d of %s: %w", frame, m.spec.Name, errFakeCorrupt)
		}
		return data, nil
	}
}

func (m *fakeImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fake: negative offset %d", off)
	}
	if off >= m.spec.Size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), m.spec.Size-off)
	for pos := off; pos < off+n; {
		page := pos / format.PageSize
		in := pos - page*format.PageSize
		chunk := min(format.PageSize-in, off+n-pos)
		dst := p[pos-off : pos-off+chunk]
		if e, ok := m.Locate(page); ok {
			f, err := m.Frame(context.Background(), int(e.Frame))
			if err != nil {
				return int(pos - off), err
			}
			copy(dst, f[int64(e.Slot)*format.PageSize+in:])
		} else {
			clear(dst)
		}
		pos += chunk
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}
