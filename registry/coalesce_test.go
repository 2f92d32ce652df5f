package registry

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
	"github.com/smolvm/smolvm/registry/registrytest"
)

func TestGroupRuns(t *testing.T) {
	pa, pb := format.Digest{1}, format.Digest{2}
	// Frames 0-3 back to back in pack a (lengths 10, 20, 30, 40), frame 4
	// after a gap of 5, frames 5-6 back to back in pack b.
	locs := []frameLoc{
		{pack: pa, offset: 0, length: 10}, {pack: pa, offset: 10, length: 20}, {pack: pa, offset: 30, length: 30},
		{pack: pa, offset: 60, length: 40}, {pack: pa, offset: 105, length: 10},
		{pack: pb, offset: 0, length: 50}, {pack: pb, offset: 50, length: 50},
	}
	for _, tc := range []struct {
		name   string
		frames []int
		max    int64
		want   [][]int
	}{
		{"one frame", []int{2}, 1 << 20, [][]int{{2}}},
		{"adjacent any order", []int{3, 1, 2, 0}, 1 << 20, [][]int{{0, 1, 2, 3}}},
		{"gap splits", []int{3, 4}, 1 << 20, [][]int{{3}, {4}}},
		{"hole splits", []int{0, 2}, 1 << 20, [][]int{{0}, {2}}},
		{"packs split, most urgent first", []int{6, 0, 5, 1}, 1 << 20, [][]int{{5, 6}, {0, 1}}},
		{"max bytes", []int{0, 1, 2, 3}, 60, [][]int{{0, 1, 2}, {3}}},
		{"frame over max alone", []int{2, 3}, 25, [][]int{{2}, {3}}},
		{"duplicates once", []int{1, 1, 0, 1}, 1 << 20, [][]int{{0, 1}}},
		{"none", nil, 1 << 20, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupRuns(tc.frames, locs, tc.max)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("groupRuns(%v, max %d) = %v, want %v", tc.frames, tc.max, got, tc.want)
			}
		})
	}
}

// wsBundle pushes a 16 MiB memory image whose working set is two runs of
// contiguous pages and opens it lazily on a fresh cache.
func wsBundle(t *testing.T) (lz *Lazy, img []byte, reg *registrytest.Registry, ref, dir string) {
	t.Helper()
	reg = startRegistry(t)
	dir = t.TempDir()
	p := filepath.Join(dir, "mem.img")
	if err := sampleimage.WriteFile(p, 16<<20, sampleimage.MemoryMix, 41); err != nil {
		t.Fatal(err)
	}
	ws := []format.PageRange{{Page: 3000, Count: 400}, {Page: 100, Count: 200}}
	bundle := filepath.Join(dir, "ws.smolmachine")
	if _, err := chunkstore.Pack(ctxT(t), bundle, chunkstore.PackOptions{
		Inputs:   []chunkstore.PackInput{{Name: "memory", Path: p}},
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1}, WorkingSet: ws}}); err != nil {
		t.Fatal(err)
	}
	ref = reg.Host + "/vm:ws"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lz.Close() })
	return lz, mustRead(t, p), reg, ref, dir
}

// A demand read of a frame the prefetch planned fetches its whole run (one
// request of exactly the run's bytes), and the run's other frames are then
// read without a request; a frame outside the plan is fetched alone.
func TestDemandTakesPlannedRun(t *testing.T) {
	lz, img, _, _, _ := wsBundle(t)
	runs := groupRuns(lz.workingSetFrames(), lz.src.cfg.locs, DefaultMaxRun)
	lz.src.setPlan(runs) // planned, no worker started
	run := longestRun(t, runs)
	var runBytes int64
	for _, i := range run {
		runBytes += lz.src.cfg.locs[i].length
	}
	im, _ := lz.Image("memory")
	mem := lz.Manifest().Artifact("memory")
	pageOf := func(frame int) int64 {
		for _, e := range mem.Extents {
			if int(e.Frame) == frame {
				return e.Page
			}
		}
		t.Fatalf("frame %d holds no memory page", frame)
		return 0
	}
	buf := make([]byte, format.PageSize)
	read := func(pg int64) {
		if _, err := im.ReadAt(buf, pg*format.PageSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, img[pg*format.PageSize:(pg+1)*format.PageSize]) {
			t.Fatalf("page %d differs", pg)
		}
	}
	read(pageOf(run[len(run)/2]))
	ns := lz.NetStats()
	if ns.Requests != 1 || ns.Bytes != runBytes || ns.Coalesced != int64(len(run)-1) {
		t.Fatalf("demand read in a planned run of %d frames (%d bytes): %d requests, %d bytes, %d coalesced; want 1, %d, %d",
			len(run), runBytes, ns.Requests, ns.Bytes, ns.Coalesced, runBytes, len(run)-1)
	}
	for _, i := range run {
		read(pageOf(i))
	}
	if n := lz.NetStats().Requests; n != 1 {
		t.Fatalf("reading the rest of the run made %d more requests", n-1)
	}
	// A frame in no run: one request of that frame only.
	planned := map[int]bool{}
	for _, r := range runs {
		for _, i := range r {
			planned[i] = true
		}
	}
	for _, e := range mem.Extents {
		if !planned[int(e.Frame)] {
			read(e.Page)
			ns2 := lz.NetStats()
			if ns2.Requests != 2 || ns2.Bytes != runBytes+lz.src.cfg.locs[e.Frame].length {
				t.Fatalf("unplanned frame %d: %d requests, %d bytes in all", e.Frame, ns2.Requests, ns2.Bytes)
			}
			return
		}
	}
	t.Fatal("every frame is planned: test needs one outside the working set")
}

// Many readers of one frame at once make one request.
func TestConcurrentReadersShareFetch(t *testing.T) {
	lz, _, _, _, _ := wsBundle(t)
	const readers = 16
	var wg sync.WaitGroup
	errs := make([]error, readers)
	raws := make([][]byte, readers)
	start := make(chan struct{})
	for k := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			raws[k], errs[k] = lz.src.frame(ctxT(t), 3)
		}()
	}
	close(start)
	wg.Wait()
	for k := range readers {
		if errs[k] != nil || !bytes.Equal(raws[k], raws[0]) {
			t.Fatalf("reader %d: %v", k, errs[k])
		}
	}
	if n := lz.NetStats().Requests; n != 1 {
		t.Fatalf("%d readers of one frame made %d requests, want 1", readers, n)
	}
}

// A frame tampered in the registry inside a coalesced run: the run's other
// frames arrive and are cached, the tampered one is refused (not cached) and
// its read fails naming it; a fresh open still refuses it.
func TestCoalescedRunTamperedFrame(t *testing.T) {
	lz, img, reg, ref, dir := wsBundle(t)
	locs := lz.src.cfg.locs
	runs := groupRuns(lz.workingSetFrames(), locs, DefaultMaxRun)
	run := longestRun(t, runs)
	victim := run[len(run)/2]
	vl := locs[victim]
	path := reg.BlobPath(vl.pack.String())
	b := mustRead(t, path)
	b[vl.offset+vl.length/2] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	lz2, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "cache2")})
	if err != nil {
		t.Fatal(err)
	}
	defer lz2.Close()
	lz2.StartPrefetch(2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lz2.PrefetchWait(ctx); err != nil {
		t.Fatal(err)
	}
	vd := lz2.src.cfg.fr.Frame(victim).Digest
	if lz2.src.cache.hasFrame(vd) {
		t.Fatalf("tampered frame %d cached", victim)
	}
	for _, i := range run {
		if i != victim && !lz2.src.cache.hasFrame(lz2.src.cfg.fr.Frame(i).Digest) {
			t.Fatalf("frame %d of the run (beside tampered %d) not cached", i, victim)
		}
	}
	_, err = lz2.Frame(ctxT(t), victim)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), vd.String()) {
		t.Fatalf("read of tampered frame %d: want ErrCorrupt naming %s, got %v", victim, vd, err)
	}
	t.Logf("tampered: %v", err)
	// The run's other frames read right.
	im, _ := lz2.Image("memory")
	buf := make([]byte, format.PageSize)
	for _, e := range lz2.Manifest().Artifact("memory").Extents {
		if int(e.Frame) == victim || !slices.Contains(run, int(e.Frame)) {
			continue
		}
		if _, err := im.ReadAt(buf, e.Page*format.PageSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, img[e.Page*format.PageSize:(e.Page+1)*format.PageSize]) {
			t.Fatalf("page %d differs", e.Page)
		}
	}
}

// countingTransport counts GETs of one blob.
type countingTransport struct {
	blob string
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+c.blob) {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// The config (the bundle's TOC) is fetched once per cache: a second Open on
// the same cache (the bundle daemon after smolvm run) reads it from disk; a
// damaged cached copy is fetched again, never used.
func TestConfigCachedOnce(t *testing.T) {
	lz, _, _, ref, dir := wsBundle(t)
	a, err := lz.src.p.fetchArtifact(ctxT(t), "ws")
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest := a.manifest.Config.Digest.String()
	ct := &countingTransport{blob: cfgDigest}
	rm := Remote{Insecure: true, NoCredentials: true, Client: &http.Client{Transport: ct}}
	cache := filepath.Join(dir, "cache") // wsBundle's Open filled it
	cached := filepath.Join(cache, "blobs", "sha256", cfgDigest[len("sha256:"):])
	for _, tc := range []struct {
		name    string
		damage  bool
		fetches int64
	}{
		{"cached", false, 0},
		{"damaged copy", true, 1},
		{"cached again", false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.damage {
				b := mustRead(t, cached)
				b[len(b)/3] ^= 1
				if err := os.WriteFile(cached, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ct.n.Store(0)
			l, err := Open(ctxT(t), ref, LazyOptions{Remote: rm, CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			if n := ct.n.Load(); n != tc.fetches {
				t.Fatalf("config %s fetched %d times, want %d", cfgDigest, n, tc.fetches)
			}
		})
	}
}

// longestRun is the longest of runs; the tests using it need 3 frames or more.
func longestRun(t *testing.T, runs [][]int) []int {
	t.Helper()
	var run []int
	for _, r := range runs {
		if len(r) > len(run) {
			run = r
		}
	}
	if len(run) < 3 {
		t.Fatalf("longest run %v: test needs 3 frames or more", run)
	}
	return run
}
