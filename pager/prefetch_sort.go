package pager

import (
	"cmp"
	"errors"
	"slices"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager/uffd"
)

// prefetchPage is one listed page of a fetched frame: page idx of region r,
// its bytes src.
type prefetchPage struct {
	r   *region
	idx int64
	src []byte
}

// fillSorted fills the listed pages of a batch of fetched jobs in guest
// address order, one UFFDIO_COPY per run of adjacent pages (gathered into
// scratch): a working set laid out at record time keeps pages in
// first-touch order in its frames, where neighbours in guest memory rarely
// sit side by side, and each copy is a system call into the VMM's address
// space (a recorded boot's ~2k pages form ~900 address runs, ~1.9k runs in
// first-touch order). Pages filled meanwhile are skipped by fill. Only
// errClientGone matters to the caller; other failures are left to demand
// faults.
func (l *faultLoop) fillSorted(batch []*prefetchJob, scratch *[]byte, logf func(string, ...any)) error {
	const ps = format.PageSize
	var pages []prefetchPage
	for _, j := range batch {
		for _, p := range j.runs {
			// Only the listed pages of the frame: a working set recorded
			// page by page names exactly what the guest touched.
			from, to := p.slot*ps, (p.slot+p.n)*ps
			if from < 0 || to > int64(len(j.data)) {
				logf("pager: prefetch %s frame %d: slots %d..%d do not fit its %d bytes (left to demand faults)", p.r.Artifact, p.frame, p.slot, p.slot+p.n, len(j.data))
				continue
			}
			for k := range p.n {
				pages = append(pages, prefetchPage{r: p.r, idx: p.idx + k, src: j.data[from+k*ps : from+(k+1)*ps]})
			}
		}
	}
	slices.SortFunc(pages, func(a, b prefetchPage) int {
		return cmp.Or(cmp.Compare(a.r.HostAddr, b.r.HostAddr), cmp.Compare(a.idx, b.idx))
	})
	for i := 0; i < len(pages); {
		n := 1
		for i+n < len(pages) && pages[i+n].r == pages[i].r && pages[i+n].idx == pages[i].idx+int64(n) {
			n++
		}
		src := pages[i].src
		if n > 1 {
			if cap(*scratch) < n*ps {
				*scratch = make([]byte, n*ps)
			}
			src = (*scratch)[:n*ps]
			for k := range n {
				copy(src[k*ps:], pages[i+k].src)
			}
		}
		if err := l.fill(pages[i].r, pages[i].idx, int64(n), src, uffd.CopyModeDontWake, true); errors.Is(err, errClientGone) {
			return err
		}
		i += n
	}
	return nil
}
