package pager

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// subset is a scattered 30% of the pages, in shuffled order: a "boot".
func subset(pages int64, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, 2))
	var l []int64
	for p := int64(0); p < pages; p++ {
		if r.IntN(10) < 3 {
			l = append(l, p)
		}
	}
	r.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	return l
}

func covers(ws *WorkingSet, artifact string, p int64) bool {
	for _, r := range ws.Ranges {
		if r.Artifact == artifact && p >= r.Page && p < r.Page+r.Count {
			return true
		}
	}
	return false
}

// Record a working set, then prefetch it: the same touches fault (almost)
// never, bytes stay identical, and prefetch racing demand faults is safe.
func TestWorkingSetRecordAndPrefetch(t *testing.T) {
	cfg := testImageConfig(4096)
	im := fakeimage.New(cfg)
	sock := testServer(t, &Server{Open: openOnly(im), Workers: 2})
	list := subset(cfg.Pages, 7)

	rec := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "list", List: list, Threads: 2, Method: "direct", Split: true, Record: true}, 60*time.Second)
	if rec.code != exitOK {
		t.Fatalf("record run: exit %d\n%s", rec.code, rec.stderr)
	}
	ws := rec.res.WorkingSet
	if err := ws.Validate(); err != nil {
		t.Fatalf("recorded working set invalid: %v", err)
	}
	for _, p := range list {
		if !covers(ws, "memory", p) {
			t.Fatalf("working set misses touched page %d", p)
		}
	}
	if ws.Pages() > cfg.Pages {
		t.Errorf("working set covers %d pages, more than the image's %d", ws.Pages(), cfg.Pages)
	}
	// Recorded page by page: about the 30% touched (and zero runs filled
	// with them), not the whole frames they sit in (nearly all of them).
	if ws.Pages() > cfg.Pages/2 {
		t.Errorf("working set covers %d of %d pages for %d touched: whole frames recorded", ws.Pages(), cfg.Pages, len(list))
	}

	tests := []struct {
		name      string
		prefetch  *WorkingSet
		pattern   string
		wait      bool
		threads   int
		maxFaults int64
	}{
		{"prefetched before touching", ws, "list", true, 2, rec.res.Stats.Faults / 20},
		{"prefetch racing faults", ws, "list", false, 4, rec.res.Stats.Faults},
		{"whole-image prefetch racing random faults", &WorkingSet{Version: 1, PageSize: PageSize,
			Ranges: []PageRange{{Artifact: "memory", Page: 0, Count: cfg.Pages}}}, "random", false, 4, cfg.Pages},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: tt.pattern, List: list, Threads: tt.threads,
				Method: "direct", Split: true, Prefetch: tt.prefetch, WaitPrefetch: tt.wait}, 60*time.Second)
			if out.code != exitOK {
				t.Fatalf("exit %d\n%s", out.code, out.stderr)
			}
			st := out.res.Stats
			if st.Faults > tt.maxFaults {
				t.Errorf("faults %d, want at most %d (recording run had %d)", st.Faults, tt.maxFaults, rec.res.Stats.Faults)
			}
			if filled := st.PagesCopied + st.ZeroPages; filled > cfg.Pages {
				t.Errorf("filled %d pages of %d: some twice", filled, cfg.Pages)
			}
			if tt.wait && st.PrefetchedPages < int64(len(list)) {
				t.Errorf("prefetched %d pages, fewer than the %d touched", st.PrefetchedPages, len(list))
			}
			t.Logf("faults %d (recording run %d), prefetched %d, %+v", st.Faults, rec.res.Stats.Faults, st.PrefetchedPages, st)
		})
	}
}

func TestParseWorkingSet(t *testing.T) {
	tests := []struct {
		name, in, err string
	}{
		{"ok", `{"version":1,"page_size":4096,"ranges":[{"artifact":"memory","page":3,"count":2}]}`, ""},
		{"empty list", `{"version":1,"page_size":4096,"ranges":[]}`, ""},
		{"version", `{"version":2,"page_size":4096}`, "version 2"},
		{"page size", `{"version":1,"page_size":65536}`, "page size 65536"},
		{"negative page", `{"version":1,"page_size":4096,"ranges":[{"artifact":"memory","page":-1,"count":2}]}`, "range 0"},
		{"zero count", `{"version":1,"page_size":4096,"ranges":[{"artifact":"memory","page":1,"count":0}]}`, "range 0"},
		{"no artifact", `{"version":1,"page_size":4096,"ranges":[{"page":1,"count":1}]}`, "range 0"},
		{"overflow", `{"version":1,"page_size":4096,"ranges":[{"artifact":"m","page":9223372036854775807,"count":9}]}`, "range 0"},
		{"not json", `{"version":`, "working set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := ParseWorkingSet([]byte(tt.in))
			if tt.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				b, _ := json.Marshal(ws)
				if again, err := ParseWorkingSet(b); err != nil || len(again.Ranges) != len(ws.Ranges) {
					t.Fatalf("round trip: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.err)
			}
		})
	}
}

func FuzzParseWorkingSet(f *testing.F) {
	f.Add([]byte(`{"version":1,"page_size":4096,"ranges":[{"artifact":"memory","page":3,"count":2}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ws, err := ParseWorkingSet(b)
		if err != nil {
			return
		}
		for _, r := range ws.Ranges {
			if r.Count <= 0 || r.Page < 0 || r.Page+r.Count < r.Page {
				t.Fatalf("accepted bad range %+v", r)
			}
		}
	})
}

func TestRecorderCoalesces(t *testing.T) {
	r := newRecorder(true)
	r.pages("memory", 0, 2)
	r.pages("memory", 2, 3) // adjacent: merged
	r.pages("disk", 5, 1)
	r.pages("memory", 9, 1)
	r.pages("memory", 10, 1)
	ws := r.stop()
	r.pages("memory", 11, 1) // after stop: ignored
	want := []PageRange{{"memory", 0, 5}, {"disk", 5, 1}, {"memory", 9, 2}}
	if len(ws.Ranges) != len(want) {
		t.Fatalf("ranges %+v, want %+v", ws.Ranges, want)
	}
	for i := range want {
		if ws.Ranges[i] != want[i] {
			t.Errorf("range %d = %+v, want %+v", i, ws.Ranges[i], want[i])
		}
	}
}
