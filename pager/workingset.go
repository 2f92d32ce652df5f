package pager

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/format"
)

// WorkingSetVersion is the version of the WorkingSet JSON form.
const WorkingSetVersion = 1

// WorkingSet is the order in which a resumed VM first needed its pages, as
// image page ranges of the bundle's artifacts (independent of how they are
// framed): what a bundle carries (e.g. as a "working-set.json" artifact) so
// that the next resume prefetches it in order. While recording, a fault
// fills and records the faulting page only (zero pages: the run filled
// with it); a working set recorded by an older pager may list whole frames.
type WorkingSet struct {
	Version  int         `json:"version"`
	PageSize int         `json:"page_size"`
	Ranges   []PageRange `json:"ranges"`
}

// PageRange is Count image pages of Artifact from Page on.
type PageRange struct {
	Artifact string `json:"artifact"`
	Page     int64  `json:"page"`
	Count    int64  `json:"count"`
}

// maxWorkingSetRanges bounds a parsed working set (1 TiB in 1-page ranges).
const maxWorkingSetRanges = 1 << 28

// ParseWorkingSet decodes and validates a working set.
func ParseWorkingSet(b []byte) (*WorkingSet, error) {
	var ws WorkingSet
	if err := json.Unmarshal(b, &ws); err != nil {
		return nil, fmt.Errorf("pager: working set: %w", err)
	}
	if err := ws.Validate(); err != nil {
		return nil, err
	}
	return &ws, nil
}

// Validate checks the version, page size and that every range is sane.
func (ws *WorkingSet) Validate() error {
	if ws.Version != WorkingSetVersion {
		return fmt.Errorf("pager: working set version %d, want %d", ws.Version, WorkingSetVersion)
	}
	if ws.PageSize != format.PageSize {
		return fmt.Errorf("pager: working set page size %d, want %d", ws.PageSize, format.PageSize)
	}
	if len(ws.Ranges) > maxWorkingSetRanges {
		return fmt.Errorf("pager: working set has %d ranges, more than %d", len(ws.Ranges), maxWorkingSetRanges)
	}
	for i, r := range ws.Ranges {
		if r.Artifact == "" || r.Page < 0 || r.Count <= 0 || r.Page > (1<<52)-r.Count {
			return fmt.Errorf("pager: working set range %d (%q page %d count %d): invalid", i, r.Artifact, r.Page, r.Count)
		}
	}
	return nil
}

// Pages is the total number of pages the ranges cover.
func (ws *WorkingSet) Pages() int64 {
	var n int64
	for _, r := range ws.Ranges {
		n += r.Count
	}
	return n
}

// recorder collects a working set from demand faults until stopped.
type recorder struct {
	mu      sync.Mutex
	on      bool
	ranges  []PageRange
	seenFrm map[frameKey]bool
}

type frameKey struct {
	artifact string
	frame    int32
}

func newRecorder(on bool) *recorder { return &recorder{on: on, seenFrm: map[frameKey]bool{}} }

// frame records the artifact's pages stored in frame f, once per frame.
func (r *recorder) frame(artifact string, f int32, exts []format.Extent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := frameKey{artifact, f}
	if !r.on || r.seenFrm[k] {
		return
	}
	r.seenFrm[k] = true
	for _, e := range exts {
		r.add(artifact, e.Page, int64(e.Count))
	}
}

// recording says whether faults are being recorded.
func (r *recorder) recording() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on
}

// pages records a run of pages (zero pages, or one faulted page).
func (r *recorder) pages(artifact string, page, count int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.on {
		r.add(artifact, page, count)
	}
}

func (r *recorder) add(artifact string, page, count int64) {
	if n := len(r.ranges); n > 0 {
		last := &r.ranges[n-1]
		if last.Artifact == artifact && last.Page+last.Count == page {
			last.Count += count
			return
		}
	}
	r.ranges = append(r.ranges, PageRange{Artifact: artifact, Page: page, Count: count})
}

// stop ends recording and returns what was recorded.
func (r *recorder) stop() *WorkingSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return &WorkingSet{Version: WorkingSetVersion, PageSize: format.PageSize, Ranges: append([]PageRange(nil), r.ranges...)}
}
