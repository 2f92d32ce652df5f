package pager

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// The prefetch copies a batch's pages in guest address order, adjacent
// pages in one UFFDIO_COPY, whatever order the working set lists them in
// (here: shuffled, as first touches are) and the frames hold them in (a
// layout that scatters neighbours: pages stored highest first, every
// extent one page), and the guest reads every page right.
func TestPrefetchSortedCopies(t *testing.T) {
	const pages = 1024 // 64 frames of 16 pages: one batch (prefetchAhead)
	for _, tc := range []struct {
		name      string
		reverse   bool
		zero      int
		maxCopies int64
	}{
		{"address order", false, 0, 4},
		{"reversed layout", true, 0, 4},
		{"reversed layout with zero pages", true, 20, pages / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testImageConfig(pages)
			cfg.Reverse, cfg.ZeroPercent, cfg.ZeroRuns = tc.reverse, tc.zero, false
			sock := testServer(t, &Server{Open: openOnly(fakeimage.New(cfg))})
			// Every page, listed one by one in a shuffled (first-touch
			// like) order.
			ws := &WorkingSet{Version: WorkingSetVersion, PageSize: PageSize}
			for _, p := range rand.New(rand.NewPCG(7, 9)).Perm(pages) {
				ws.Ranges = append(ws.Ranges, PageRange{Artifact: "memory", Page: int64(p), Count: 1})
			}
			out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 1, Method: "direct",
				Prefetch: ws, WaitPrefetch: true}, 60*time.Second)
			if out.code != exitOK {
				t.Fatalf("exit %d\n%s", out.code, out.stderr)
			}
			st := out.res.Stats
			if st.PrefetchedPages != pages || st.Faults != 0 {
				t.Fatalf("prefetched %d of %d pages, %d faults after: %+v", st.PrefetchedPages, pages, st.Faults, st)
			}
			if st.Copies > tc.maxCopies {
				t.Errorf("%d copy calls for %d pages, want at most %d: not coalesced in address order", st.Copies, pages, tc.maxCopies)
			}
			t.Logf("%d pages in %d copy calls", pages, st.Copies)
		})
	}
}
