package pager

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/pagemap"
)

// Which prefetched pages did the guest use? Guest accesses go through
// KVM's nested page tables, so the host PTE young bit says nothing; but
// when KVM maps a host page into the guest (the guest's first touch of it
// in this VM) it releases the page with mark_page_accessed, which sets the
// page's PG_referenced flag. So: once the prefetch is in and before the
// vCPUs first run, Mark clears PG_referenced of every page of this process
// (/proc/self/clear_refs "1"); at ready, Measure looks up each prefetched
// page's frame (/proc/self/pagemap, PFNs need CAP_SYS_ADMIN) and its flags
// (/proc/kpageflags): referenced is used, present and not referenced is
// wasted. A second mark_page_accessed of a referenced page activates it
// and clears PG_referenced, so a page that became active since Mark counts
// as used too. A page still mapped to the shared zero page (prefetched as
// zeros, never written) leaves no trace when read: counted apart.
//
// Only /proc files are read: no guest page is touched (a process must not
// fault on memory it serves, and the VMM must not fault guest memory in
// from Go code).

// ErrNoPageFlags: the kernel does not let this process see page frames or
// their flags (no /proc/kpageflags, or not root).
var ErrNoPageFlags = errors.New("pager: page flags unavailable")

// /proc/self/pagemap entry bits (internal/pagemap).
const (
	pmPFNMask = pagemap.PFNMask
	pmSwapped = pagemap.Swapped
	pmPresent = pagemap.Present
)

// /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h).
const (
	kpfReferenced = 1 << 2
	kpfActive     = 1 << 6
	kpfNoPage     = 1 << 20
	kpfZeroPage   = 1 << 24
)

// PrefetchUse is how the guest used the pages prefetched before its vCPUs
// first ran: Used + Wasted + Zero + Absent == Pages.
type PrefetchUse struct {
	Pages  int64 `json:"pages"`  // distinct prefetched pages of guest RAM
	Used   int64 `json:"used"`   // touched by the guest since Mark
	Wasted int64 `json:"wasted"` // present and not touched since Mark
	// Zero: still the shared zero page (prefetched as zeros, never
	// written); a guest read of it leaves no trace: not known.
	Zero   int64 `json:"zero"`
	Absent int64 `json:"absent"` // not present (not filled, dropped or swapped out)
	// MarkSeconds is what Mark took (before the vCPUs ran), ClearSeconds
	// the clear_refs write within it (the kernel walks every mapped page of
	// the process); MeasureSeconds is what Measure took.
	MarkSeconds    float64 `json:"mark_s"`
	ClearSeconds   float64 `json:"clear_s"`
	MeasureSeconds float64 `json:"measure_s"`
}

// hostRun is pages [addr, addr+n*PageSize) of this process.
type hostRun struct {
	addr uint64
	n    int64
}

// AccessTracker tells which of a set of pages of this process were touched
// by a KVM guest between Mark and Measure.
type AccessTracker struct {
	runs      []hostRun
	pages     int64
	pagemap   io.ReaderAt
	kpf       io.ReaderAt
	clear     func() error
	closers   []io.Closer
	marked    bool
	markTime  time.Duration
	clearTime time.Duration
	// activeAt: page index -> PFN, for pages already active at Mark.
	activeAt map[int64]uint64
}

// NewAccessTracker tracks the pages of ws that regions map (ws pages
// outside every region are left out; a page listed twice counts once). It
// fails with ErrNoPageFlags when this process cannot read page frames and
// flags.
func NewAccessTracker(ws *WorkingSet, regions []Region) (*AccessTracker, error) {
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoPageFlags, err)
	}
	kpf, err := os.Open("/proc/kpageflags")
	if err != nil {
		pm.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoPageFlags, err)
	}
	t := newAccessTracker(hostRuns(ws, regions), pm, kpf, clearRefs)
	t.closers = []io.Closer{pm, kpf}
	return t, nil
}

func newAccessTracker(runs []hostRun, pagemap, kpf io.ReaderAt, clear func() error) *AccessTracker {
	t := &AccessTracker{runs: runs, pagemap: pagemap, kpf: kpf, clear: clear}
	for _, r := range runs {
		t.pages += r.n
	}
	return t
}

// Pages is how many distinct pages are tracked.
func (t *AccessTracker) Pages() int64 { return t.pages }

// clearRefs clears PG_referenced (and the PTE young bits) of every page
// mapped by this process.
func clearRefs() error {
	f, err := os.OpenFile("/proc/self/clear_refs", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoPageFlags, err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("1")); err != nil {
		return fmt.Errorf("pager: /proc/self/clear_refs: %w", err)
	}
	return nil
}

// hostRuns is the pages of ws inside regions as sorted, merged host runs.
func hostRuns(ws *WorkingSet, regions []Region) []hostRun {
	const ps = format.PageSize
	var runs []hostRun
	if ws == nil {
		return nil
	}
	for _, pr := range ws.Ranges {
		for _, r := range regions {
			if r.Artifact != pr.Artifact || r.Offset%ps != 0 || r.HostAddr%ps != 0 {
				continue
			}
			first := r.Offset / ps
			lo := max(pr.Page, first)
			hi := min(pr.Page+pr.Count, first+int64(r.Length/ps))
			if hi > lo {
				runs = append(runs, hostRun{addr: r.HostAddr + uint64(lo-first)*ps, n: hi - lo})
			}
		}
	}
	slices.SortFunc(runs, func(a, b hostRun) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	var out []hostRun
	for _, r := range runs {
		if k := len(out) - 1; k >= 0 && r.addr <= out[k].addr+uint64(out[k].n)*ps {
			end := max(out[k].addr+uint64(out[k].n)*ps, r.addr+uint64(r.n)*ps)
			out[k].n = int64((end - out[k].addr) / ps)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Mark starts the measurement: it clears PG_referenced of every page of
// this process, then notes which tracked pages are active already. Call it
// once the prefetch is complete and before the vCPUs first run.
func (t *AccessTracker) Mark() error {
	start := time.Now()
	if err := t.clear(); err != nil {
		return err
	}
	t.clearTime = time.Since(start)
	t.activeAt = map[int64]uint64{}
	err := t.walk(func(i int64, entry, flags uint64) {
		if flags&kpfActive != 0 {
			t.activeAt[i] = entry & pmPFNMask
		}
	})
	if err != nil {
		return err
	}
	t.marked, t.markTime = true, time.Since(start)
	return nil
}

// Measure classifies every tracked page by what happened since Mark.
func (t *AccessTracker) Measure() (PrefetchUse, error) {
	start := time.Now()
	u := PrefetchUse{Pages: t.pages}
	st, err := t.states()
	if err != nil {
		return u, err
	}
	for _, s := range st {
		switch s {
		case pageUsed:
			u.Used++
		case pageWasted:
			u.Wasted++
		case pageZero:
			u.Zero++
		default:
			u.Absent++
		}
	}
	u.MarkSeconds, u.ClearSeconds, u.MeasureSeconds = t.markTime.Seconds(), t.clearTime.Seconds(), time.Since(start).Seconds()
	return u, nil
}

// states is each tracked page's state, in address order.
func (t *AccessTracker) states() ([]pageState, error) {
	if !t.marked {
		return nil, errors.New("pager: access tracker: Measure before Mark")
	}
	out := make([]pageState, 0, t.pages)
	err := t.walk(func(i int64, entry, flags uint64) {
		pfn, was := t.activeAt[i]
		out = append(out, classify(entry, flags, was && pfn == entry&pmPFNMask))
	})
	return out, err
}

// Close closes the /proc files.
func (t *AccessTracker) Close() error {
	var errs []error
	for _, c := range t.closers {
		errs = append(errs, c.Close())
	}
	t.closers = nil
	return errors.Join(errs...)
}

// pageState is what one tracked page turned out to be.
type pageState int

const (
	pageAbsent pageState = iota
	pageUsed
	pageWasted
	pageZero
)

// classify is a page's state from its pagemap entry and its frame's
// kpageflags (0 when absent); activeBefore: the same frame was active at
// Mark, so its being active says nothing.
func classify(entry, flags uint64, activeBefore bool) pageState {
	switch {
	case entry&pmPresent == 0 || flags&kpfNoPage != 0:
		return pageAbsent
	case flags&kpfZeroPage != 0:
		return pageZero
	case flags&kpfReferenced != 0, flags&kpfActive != 0 && !activeBefore:
		return pageUsed
	}
	return pageWasted
}

// walk calls fn for each tracked page in order with its pagemap entry and
// its frame's flags (0 when not present).
func (t *AccessTracker) walk(fn func(i int64, entry, flags uint64)) error {
	entries := make([]uint64, 0, t.pages)
	for _, w := range planWindows(t.runs) {
		first := w.runs[0].addr / format.PageSize
		e, err := pagemap.Read(t.pagemap, w.runs[0].addr, w.pages)
		if err != nil {
			return fmt.Errorf("pager: %w", err)
		}
		for _, r := range w.runs {
			i := r.addr/format.PageSize - first
			entries = append(entries, e[i:i+uint64(r.n)]...)
		}
	}
	var pfns []uint64
	for i, e := range entries {
		if e&pmPresent == 0 {
			continue
		}
		if e&pmPFNMask == 0 {
			return fmt.Errorf("%w: pagemap shows no page frame numbers for present pages (page %d): CAP_SYS_ADMIN needed", ErrNoPageFlags, i)
		}
		pfns = append(pfns, e&pmPFNMask)
	}
	flags, err := readPageFlags(t.kpf, pfns)
	if err != nil {
		return err
	}
	for i, e := range entries {
		var f uint64
		if e&pmPresent != 0 {
			f = flags[e&pmPFNMask]
		}
		fn(int64(i), e, f)
	}
	return nil
}

// Reads of /proc/self/pagemap: runs less than pmGap pages apart share one
// read of at most pmMaxWindow entries (few syscalls: they are slow in a
// nested lab, and this runs before the vCPUs do).
const (
	pmGap       = 512
	pmMaxWindow = 1 << 16
)

// pmWindow is one pagemap read covering runs (sorted, disjoint).
type pmWindow struct {
	runs  []hostRun
	pages int64 // from runs[0] to the end of the last
}

// planWindows groups sorted, disjoint runs into pagemap reads.
func planWindows(runs []hostRun) []pmWindow {
	var ws []pmWindow
	for i, r := range runs {
		if k := len(ws) - 1; k >= 0 {
			w := &ws[k]
			start := w.runs[0].addr / format.PageSize
			end := start + uint64(w.pages)
			p := r.addr / format.PageSize
			if p >= end && p-end <= pmGap && p+uint64(r.n)-start <= pmMaxWindow {
				w.runs = runs[i-len(w.runs) : i+1]
				w.pages = int64(p + uint64(r.n) - start)
				continue
			}
		}
		ws = append(ws, pmWindow{runs: runs[i : i+1], pages: r.n})
	}
	return ws
}

// Reads of /proc/kpageflags: frames less than kpfGap apart share one read
// of at most kpfMaxSpan entries.
const (
	kpfGap     = 64
	kpfMaxSpan = 4096
)

// pfnSpan is kpageflags entries [first, first+n).
type pfnSpan struct{ first, n uint64 }

// planSpans groups the distinct frames of pfns (sorted in place) into
// spans to read.
func planSpans(pfns []uint64) []pfnSpan {
	slices.Sort(pfns)
	var spans []pfnSpan
	for i, p := range pfns {
		if i > 0 && p == pfns[i-1] {
			continue
		}
		if k := len(spans) - 1; k >= 0 && p-(spans[k].first+spans[k].n-1) <= kpfGap && p-spans[k].first < kpfMaxSpan {
			spans[k].n = p - spans[k].first + 1
			continue
		}
		spans = append(spans, pfnSpan{first: p, n: 1})
	}
	return spans
}

// readPageFlags reads the kpageflags of each frame in pfns.
func readPageFlags(kpf io.ReaderAt, pfns []uint64) (map[uint64]uint64, error) {
	flags := make(map[uint64]uint64, len(pfns))
	for _, s := range planSpans(pfns) {
		if s.first > (1<<60)/8 {
			return nil, fmt.Errorf("pager: kpageflags: frame %#x out of range", s.first)
		}
		b := make([]byte, s.n*8)
		if n, err := kpf.ReadAt(b, int64(s.first*8)); n != len(b) {
			return nil, fmt.Errorf("pager: kpageflags of frames %#x..%#x: read %d of %d bytes: %v", s.first, s.first+s.n-1, n, len(b), err)
		}
		e, err := pagemap.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("pager: kpageflags: %w", err)
		}
		for i, f := range e {
			flags[s.first+uint64(i)] = f
		}
	}
	return flags, nil
}
