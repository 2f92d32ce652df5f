package pager

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are one registered VM's paging counters.
type Stats struct {
	Faults          int64 `json:"faults"`           // page-fault messages read
	WakeOnly        int64 `json:"wake_only"`        // faults on pages already filled (raced): just woken
	AlreadyPresent  int64 `json:"already_present"`  // copies/zero fills refused (EEXIST) for pages not marked filled
	Refilled        int64 `json:"refilled"`         // filled pages dropped by the VMM (MADV_DONTNEED), faulted again: zero-filled
	PagesCopied     int64 `json:"pages_copied"`     // UFFDIO_COPY pages, demand and prefetch
	ZeroPages       int64 `json:"zero_pages"`       // UFFDIO_ZEROPAGE pages, demand and prefetch
	Copies          int64 `json:"copies"`           // UFFDIO_COPY and UFFDIO_ZEROPAGE calls that filled pages
	FramesFetched   int64 `json:"frames_fetched"`   // frames obtained from the image
	BytesFetched    int64 `json:"bytes_fetched"`    // their decompressed bytes
	PrefetchedPages int64 `json:"prefetched_pages"` // pages filled by prefetch (copied or zeroed)
	PrefetchDone    bool  `json:"prefetch_done"`    // the prefetch list has been worked through
	// PrefetchTime: from registration to the prefetch list worked through
	// (0 while it is not).
	PrefetchTime time.Duration `json:"prefetch_ns"`
	FaultErrors  int64         `json:"fault_errors"` // faults that could not be served
	// Fault service latency: from reading the fault message to the
	// faulting page being filled and its thread woken.
	LatencyCount int64         `json:"latency_count"`
	LatencyP50   time.Duration `json:"latency_p50_ns"`
	LatencyP99   time.Duration `json:"latency_p99_ns"`
	LatencyMax   time.Duration `json:"latency_max_ns"`
}

// counters are updated by a session's fault loop and read by stats
// requests.
type counters struct {
	faults, wakeOnly, pagesCopied, zeroPages, copies atomic.Int64
	framesFetched, bytesFetched, prefetched          atomic.Int64
	faultErrors, refilled, alreadyPresent            atomic.Int64
	prefetchDone                                     atomic.Bool
	registered                                       time.Time
	prefetchTime                                     atomic.Int64
	// prefetchDoneCh is closed with prefetchDone set (made by register).
	prefetchDoneCh   chan struct{}
	prefetchDoneOnce sync.Once
	latency          histogram
}

// markPrefetchDone records that the prefetch list has been worked through.
func (c *counters) markPrefetchDone() {
	if !c.registered.IsZero() {
		c.prefetchTime.Store(int64(time.Since(c.registered)))
	}
	c.prefetchDone.Store(true)
	if c.prefetchDoneCh != nil {
		c.prefetchDoneOnce.Do(func() { close(c.prefetchDoneCh) })
	}
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Faults: c.faults.Load(), WakeOnly: c.wakeOnly.Load(), PagesCopied: c.pagesCopied.Load(),
		ZeroPages: c.zeroPages.Load(), Copies: c.copies.Load(), FramesFetched: c.framesFetched.Load(), BytesFetched: c.bytesFetched.Load(),
		PrefetchedPages: c.prefetched.Load(), PrefetchDone: c.prefetchDone.Load(), FaultErrors: c.faultErrors.Load(),
		Refilled: c.refilled.Load(), AlreadyPresent: c.alreadyPresent.Load(),
		PrefetchTime: time.Duration(c.prefetchTime.Load()),
	}
	s.LatencyCount = c.latency.count()
	s.LatencyP50 = c.latency.quantile(0.50)
	s.LatencyP99 = c.latency.quantile(0.99)
	s.LatencyMax = time.Duration(c.latency.max.Load())
	return s
}

// histogram is a log-linear latency histogram: 8 buckets per power of two
// of nanoseconds, so a quantile is accurate to 12.5%.
type histogram struct {
	buckets [64 * subBuckets]atomic.Int64
	max     atomic.Int64
}

const subBits = 3
const subBuckets = 1 << subBits

func bucketOf(ns int64) int {
	if ns < subBuckets {
		return int(max(ns, 0))
	}
	exp := bits.Len64(uint64(ns)) - 1 // ns in [2^exp, 2^(exp+1))
	sub := int(ns>>(exp-subBits)) & (subBuckets - 1)
	return (exp-subBits+1)*subBuckets + sub
}

// bucketUpper is the largest value in bucket i.
func bucketUpper(i int) int64 {
	if i < subBuckets {
		return int64(i)
	}
	exp := i/subBuckets + subBits - 1
	sub := int64(i % subBuckets)
	return (int64(1)<<exp | (sub+1)<<(exp-subBits)) - 1
}

func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	h.buckets[bucketOf(ns)].Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

func (h *histogram) count() int64 {
	var n int64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	total := h.count()
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.5)
	rank = max(rank, 1)
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketUpper(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
