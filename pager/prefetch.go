package pager

import (
	"context"

	"github.com/smolvm/smolvm/format"
)

// prefetchAhead is how many fetched frames may wait for the fault loop.
const prefetchAhead = 4

// maxPrefetchZeroRun bounds one zero-page prefetch item.
const maxPrefetchZeroRun = 256

// runPrefetch walks ws in order and hands the fault loop the frames (and
// zero runs) holding pages still missing. It fetches ahead of the loop but
// the loop only takes an item when no fault is pending, so demand faults
// always go first. Fetch errors skip the frame: a demand fault on it will
// report the error.
func (l *faultLoop) runPrefetch(ctx context.Context, ws *WorkingSet, logf func(string, ...any)) {
	failed := map[frameKey]bool{}
	fetched := map[frameKey][]byte{}
	send := func(it prefetchItem) bool {
		select {
		case l.prefetch <- it:
			l.signal()
			return true
		case <-ctx.Done():
			return false
		}
	}
	// The loop marks prefetch done when it reaches this last item.
	defer send(prefetchItem{last: true})
	for _, pr := range ws.Ranges {
		for _, r := range l.regions {
			if r.Artifact != pr.Artifact {
				continue
			}
			idx, n := r.clip(pr.Page, pr.Count)
			end := idx + n
			for i := idx; i < end; {
				if ctx.Err() != nil {
					return
				}
				if r.isFilled(i) {
					i++
					continue
				}
				e, ok := r.img.Locate(r.firstPage + i)
				if !ok {
					j := i + 1
					for j < end && j-i < maxPrefetchZeroRun && !r.isFilled(j) {
						if _, ok := r.img.Locate(r.firstPage + j); ok {
							break
						}
						j++
					}
					if !send(prefetchItem{r: r, idx: i, n: j - i}) {
						return
					}
					i = j
					continue
				}
				next := min(end, e.End()-r.firstPage)
				k := frameKey{r.Artifact, e.Frame}
				if failed[k] {
					i = next
					continue
				}
				data, ok := fetched[k]
				if !ok {
					var err error
					if data, err = l.fetch(ctx, r.img, e.Frame); err != nil {
						if ctx.Err() == nil {
							logf("pager: prefetch %s frame %d: %v (left to demand faults)", r.Artifact, e.Frame, err)
						}
						failed[k] = true
						i = next
						continue
					}
					fetched = map[frameKey][]byte{k: data} // the latest frame only: ranges of one frame come together
				}
				// Only the listed pages of the frame: a working set
				// recorded page by page names exactly what the guest
				// touched.
				from := (int64(e.Slot) + r.firstPage + i - e.Page) * format.PageSize
				to := from + (next-i)*format.PageSize
				if from < 0 || to > int64(len(data)) {
					logf("pager: prefetch %s frame %d: pages %d..%d do not fit its %d bytes (left to demand faults)", r.Artifact, e.Frame, i, next, len(data))
					failed[k] = true
					i = next
					continue
				}
				if !send(prefetchItem{r: r, idx: i, n: next - i, data: data[from:to]}) {
					return
				}
				i = next
			}
		}
	}
}
