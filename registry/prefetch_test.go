package registry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// The working set is prefetched in the background: afterwards, reading it
// makes no request; Close stops a prefetch in progress promptly.
func TestPrefetchWorkingSet(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "mem.img")
	if err := sampleimage.WriteFile(img, 16<<20, sampleimage.MemoryMix, 31); err != nil {
		t.Fatal(err)
	}
	ws := []format.PageRange{{Page: 2000, Count: 300}, {Page: 10, Count: 100}}
	bundle := filepath.Join(dir, "ws.smolmachine")
	if _, err := chunkstore.Pack(ctxT(t), bundle, chunkstore.PackOptions{
		Inputs:   []chunkstore.PackInput{{Name: "memory", Path: img}},
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1}, WorkingSet: ws}}); err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/vm:ws"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c")})
	if err != nil {
		t.Fatal(err)
	}
	defer lz.Close()
	wsFrames := lz.workingSetFrames()
	want := len(wsFrames)
	if want < 3 {
		t.Fatalf("working set spans %d frames: test needs more", want)
	}
	var wantBytes int64
	for _, i := range wsFrames {
		wantBytes += lz.src.cfg.locs[i].length
	}
	runs := groupRuns(wsFrames, lz.src.cfg.locs, DefaultMaxRun)
	lz.StartPrefetch(2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lz.PrefetchWait(ctx); err != nil {
		t.Fatal(err)
	}
	ns := lz.NetStats()
	before := ns.Requests
	t.Logf("working set: %d frames, %d bytes: prefetched with %d range requests, %d bytes", want, wantBytes, ns.Requests, ns.Bytes)
	if lz.Prefetched() != int64(want) || before != int64(len(runs)) || ns.Bytes != wantBytes {
		t.Fatalf("prefetched %d frames with %d requests and %d bytes; the working set has %d frames of %d bytes in %d runs",
			lz.Prefetched(), before, ns.Bytes, want, wantBytes, len(runs))
	}
	if len(runs) >= want {
		t.Fatalf("%d runs for %d frames: nothing coalesced (the ranges are contiguous pages)", len(runs), want)
	}
	im, _ := lz.Image("memory")
	buf := make([]byte, format.PageSize)
	for _, r := range ws {
		for pg := r.Page; pg < r.Page+r.Count; pg++ {
			if _, err := im.ReadAt(buf, pg*format.PageSize); err != nil {
				t.Fatal(err)
			}
		}
	}
	if after := lz.NetStats().Requests; after != before {
		t.Fatalf("reading the prefetched working set made %d requests", after-before)
	}

	// A second bundle opened on a cold cache: Close mid-prefetch returns.
	lz2, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c2")})
	if err != nil {
		t.Fatal(err)
	}
	lz2.StartPrefetch(1)
	start := time.Now()
	lz2.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with a prefetch running", d)
	}
}
