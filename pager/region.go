package pager

import (
	"fmt"
	"sync/atomic"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// region is a registered Region resolved against its image, with a bitmap of
// the pages the daemon has filled. Only the session's fault loop sets bits;
// the prefetcher reads them.
type region struct {
	Region
	img       chunkstore.Image
	firstPage int64 // image page at HostAddr
	pages     int64
	filled    []atomic.Uint64
}

func newRegion(r Region, img chunkstore.Image) (*region, error) {
	const ps = format.PageSize
	switch {
	case r.Length == 0:
		return nil, fmt.Errorf("region %s at %#x: zero length", r.Artifact, r.HostAddr)
	case r.HostAddr%ps != 0 || r.Length%ps != 0 || r.Offset%ps != 0:
		return nil, fmt.Errorf("region %s at %#x (length %#x, offset %#x): not page aligned", r.Artifact, r.HostAddr, r.Length, r.Offset)
	case r.Offset < 0 || r.HostAddr+r.Length < r.HostAddr:
		return nil, fmt.Errorf("region %s at %#x: offset %d or length %#x out of range", r.Artifact, r.HostAddr, r.Offset, r.Length)
	}
	imgPages := (img.Size() + ps - 1) / ps
	pages := int64(r.Length / ps)
	if r.Offset/ps+pages > imgPages {
		return nil, fmt.Errorf("region %s at %#x: artifact bytes [%#x, %#x) extend past the image's %d bytes",
			r.Artifact, r.HostAddr, r.Offset, r.Offset+int64(r.Length), img.Size())
	}
	return &region{Region: r, img: img, firstPage: r.Offset / ps, pages: pages, filled: make([]atomic.Uint64, (pages+63)/64)}, nil
}

func (r *region) contains(addr uint64) bool { return addr >= r.HostAddr && addr-r.HostAddr < r.Length }

func (r *region) addr(idx int64) uintptr { return uintptr(r.HostAddr + uint64(idx)*format.PageSize) }

func (r *region) isFilled(idx int64) bool { return r.filled[idx/64].Load()&(1<<(idx%64)) != 0 }

func (r *region) setFilled(idx, n int64) {
	for i := idx; i < idx+n; i++ {
		r.filled[i/64].Or(1 << (i % 64))
	}
}

// imagePages gives the region-relative run of image pages [page, page+n)
// clipped to the region: idx, count (count 0 when disjoint).
func (r *region) clip(page, n int64) (idx, count int64) {
	lo := max(page, r.firstPage)
	hi := min(page+n, r.firstPage+r.pages)
	if hi <= lo {
		return 0, 0
	}
	return lo - r.firstPage, hi - lo
}

func overlaps(a, b *region) bool {
	return a.HostAddr < b.HostAddr+b.Length && b.HostAddr < a.HostAddr+a.Length
}
