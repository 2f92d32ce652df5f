package fakeimage

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// Config describes a fake image; the same Config gives the same bytes.
type Config struct {
	Name       string
	Pages      int64 // image size in pages
	Seed       uint64
	FramePages int   // slots per frame (default 16)
	FrameBase  int32 // index of the image's first frame in the "bundle"
	// ZeroPercent of pages are all-zero (scattered), plus every page in
	// runs where (page/64)%5 == 4 when ZeroRuns is set.
	ZeroPercent int
	ZeroRuns    bool
	// Reverse lays the data pages out highest first (as a working-set
	// layout scatters neighbours): every extent is one page.
	Reverse bool
}

// ErrCorrupt is what a corrupted frame's Frame call wraps.
var ErrCorrupt = errors.New("fakeimage: frame failed verification")

var _ chunkstore.Image = (*Image)(nil)

// Image implements chunkstore.Image.
type Image struct {
	cfg     Config
	extents []format.Extent
	byFrame map[int32][]format.Extent
	nframes int32

	mu      sync.Mutex
	cache   map[int32][]byte
	corrupt map[int32]bool
	delay   time.Duration
	stall   bool

	FrameCalls atomic.Int64 // Frame calls, successful or not
}

// New builds the extent map for cfg.
func New(cfg Config) *Image {
	if cfg.FramePages <= 0 {
		cfg.FramePages = 16
	}
	if cfg.Name == "" {
		cfg.Name = "memory"
	}
	im := &Image{cfg: cfg, byFrame: map[int32][]format.Extent{}, cache: map[int32][]byte{}, corrupt: map[int32]bool{}}
	frame, slot := cfg.FrameBase, int32(0)
	used := false
	for i := int64(0); i < cfg.Pages; i++ {
		p := i
		if cfg.Reverse {
			p = cfg.Pages - 1 - i
		}
		if im.IsZero(p) {
			continue
		}
		if slot == int32(cfg.FramePages) {
			frame, slot = frame+1, 0
		}
		n := len(im.extents)
		if n > 0 && !cfg.Reverse && im.extents[n-1].End() == p && im.extents[n-1].Frame == frame {
			im.extents[n-1].Count++
		} else {
			im.extents = append(im.extents, format.Extent{Page: p, Count: 1, Frame: frame, Slot: slot})
		}
		slot++
		used = true
	}
	slices.SortFunc(im.extents, func(a, b format.Extent) int { return cmp.Compare(a.Page, b.Page) })
	for _, e := range im.extents {
		im.byFrame[e.Frame] = append(im.byFrame[e.Frame], e)
	}
	if used {
		im.nframes = frame - cfg.FrameBase + 1
	}
	return im
}

func mix(x uint64) uint64 { // splitmix64
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// IsZero says whether page p is all-zero.
func (im *Image) IsZero(p int64) bool {
	if im.cfg.ZeroRuns && (p/64)%5 == 4 {
		return true
	}
	return im.cfg.ZeroPercent > 0 && int(mix(im.cfg.Seed^uint64(p)*7919)%100) < im.cfg.ZeroPercent
}

// FillPage writes page p's expected content into dst (PageSize bytes).
func (im *Image) FillPage(p int64, dst []byte) {
	dst = dst[:format.PageSize]
	if im.IsZero(p) {
		clear(dst)
		return
	}
	x := mix(im.cfg.Seed ^ uint64(p)<<20)
	for i := 0; i < format.PageSize; i += 8 {
		x = mix(x)
		binary.LittleEndian.PutUint64(dst[i:], x|1) // |1: never an all-zero page
	}
}

// Page returns page p's expected content.
func (im *Image) Page(p int64) []byte {
	b := make([]byte, format.PageSize)
	im.FillPage(p, b)
	return b
}

// Frames is the number of frames the image uses, from FrameBase on.
func (im *Image) Frames() int { return int(im.nframes) }

// SetCorrupt makes Frame(idx) fail with ErrCorrupt.
func (im *Image) SetCorrupt(idx int32) { im.mu.Lock(); im.corrupt[idx] = true; im.mu.Unlock() }

// SetDelay makes every uncached Frame call take d.
func (im *Image) SetDelay(d time.Duration) { im.mu.Lock(); im.delay = d; im.mu.Unlock() }

// SetStall makes Frame calls block until their context ends.
func (im *Image) SetStall(on bool) { im.mu.Lock(); im.stall = on; im.mu.Unlock() }

func (im *Image) Name() string                       { return im.cfg.Name }
func (im *Image) Size() int64                        { return im.cfg.Pages * format.PageSize }
func (im *Image) Extents() []format.Extent           { return im.extents }
func (im *Image) FrameExtents(f int) []format.Extent { return im.byFrame[int32(f)] }

func (im *Image) Locate(page int64) (format.Extent, bool) {
	i := sort.Search(len(im.extents), func(i int) bool { return im.extents[i].End() > page })
	if i < len(im.extents) && im.extents[i].Page <= page {
		return im.extents[i], true
	}
	return format.Extent{}, false
}

func (im *Image) Frame(ctx context.Context, idx int) ([]byte, error) {
	im.FrameCalls.Add(1)
	f := int32(idx)
	im.mu.Lock()
	corrupt, delay, stall, data := im.corrupt[f], im.delay, im.stall, im.cache[f]
	im.mu.Unlock()
	if corrupt {
		return nil, fmt.Errorf("fakeimage: frame %d: %w", idx, ErrCorrupt)
	}
	if stall {
		<-ctx.Done()
		return nil, fmt.Errorf("fakeimage: frame %d: %w", idx, ctx.Err())
	}
	if data != nil {
		return data, nil
	}
	exts, ok := im.byFrame[f]
	if !ok {
		return nil, fmt.Errorf("fakeimage: frame %d: not in image %s", idx, im.cfg.Name)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	slots := int32(0)
	for _, e := range exts {
		slots = max(slots, e.Slot+e.Count)
	}
	data = make([]byte, int(slots)*format.PageSize)
	for _, e := range exts {
		for i := int32(0); i < e.Count; i++ {
			im.FillPage(e.Page+int64(i), data[int(e.Slot+i)*format.PageSize:])
		}
	}
	im.mu.Lock()
	im.cache[f] = data
	im.mu.Unlock()
	return data, nil
}

// ReadAt reads the image's bytes (generated, not through frames).
func (im *Image) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("fakeimage: negative offset %d", off)
	}
	n := 0
	page := make([]byte, format.PageSize)
	for n < len(b) && off+int64(n) < im.Size() {
		o := off + int64(n)
		im.FillPage(o/format.PageSize, page)
		n += copy(b[n:], page[o%format.PageSize:])
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}
