package pager

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// Benchmarks run the faulting side in a child process, as the tests do.
// SMOLVM_BENCH_MIB sets the image size of the touch benchmarks (default
// 256; the figure is 1024).

func benchMiB() int64 {
	if v, err := strconv.Atoi(os.Getenv("SMOLVM_BENCH_MIB")); err == nil && v > 0 {
		return int64(v)
	}
	return 256
}

// BenchmarkFaultLatency: one page per frame, every frame already in the
// daemon's cache, one thread touching pages in random order: each access is
// one fault. Reports the daemon's service latency and the latency the
// faulting thread sees, p50/p99 per 4 KiB.
func BenchmarkFaultLatency(b *testing.B) {
	cfg := fakeimage.Config{Name: "memory", Pages: 16384, Seed: 3, FramePages: 1}
	im := fakeimage.New(cfg)
	for f := 0; f < im.Frames(); f++ {
		im.Frame(context.Background(), f) // warm
	}
	for _, workers := range []int{1, 2} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			sock := testServer(b, &Server{Open: openOnly(im), Workers: workers})
			var svc50, svc99, th50, th99 float64
			for b.Loop() {
				out := runClient(b, helperConfig{Socket: sock, Image: cfg, Pattern: "random", Threads: 1, Method: "direct", TimeTouches: true}, 120*time.Second)
				if out.code != exitOK {
					b.Fatalf("exit %d\n%s", out.code, out.stderr)
				}
				// Every page is copied once and faults at least once (a
				// signal interrupting a fault wait repeats the fault).
				if st := out.res.Stats; st.PagesCopied+st.AlreadyPresent != cfg.Pages || st.Faults < cfg.Pages {
					b.Fatalf("copied %d pages (%d found present) with %d faults, want %d pages, one fault each: %+v", st.PagesCopied, st.AlreadyPresent, st.Faults, cfg.Pages, st)
				}
				if st := out.res.Stats; st.AlreadyPresent > 0 {
					b.Logf("%d pages already present when copied: %+v", st.AlreadyPresent, st)
				}
				svc50, svc99 = float64(out.res.Stats.LatencyP50.Nanoseconds()), float64(out.res.Stats.LatencyP99.Nanoseconds())
				th50, th99 = float64(out.res.TouchP50.Nanoseconds()), float64(out.res.TouchP99.Nanoseconds())
			}
			b.ReportMetric(svc50/1e3, "svc-p50-us")
			b.ReportMetric(svc99/1e3, "svc-p99-us")
			b.ReportMetric(th50/1e3, "fault-p50-us")
			b.ReportMetric(th99/1e3, "fault-p99-us")
		})
	}
}

// BenchmarkTouchAll touches every page of a packed memory image once (one
// thread reading a byte per page, in order), cold (a freshly opened bundle
// each time): through userfaultfd, by reading the whole image eagerly
// (Image.ReadAt into a buffer, what a non-lazy restore does), and through a
// MAP_PRIVATE mapping on a FUSE mount. The bundle file itself is in the
// host's page cache in all three.
func BenchmarkTouchAll(b *testing.B) {
	size := benchMiB() << 20
	_, raw := packMemory(b, size)
	bundlePath := filepath.Join(filepath.Dir(raw), "vm.smolmachine")
	open := func(b *testing.B) *chunkstore.Bundle {
		cb, err := chunkstore.Open(bundlePath, chunkstore.Options{CacheBytes: size})
		if err != nil {
			b.Fatal(err)
		}
		return cb
	}
	pages := size / PageSize
	// MiB-read: compressed bytes read from the bundle file.
	report := func(b *testing.B, total time.Duration, read int64) {
		b.ReportMetric(float64(total.Microseconds())/1e3/float64(b.N), "ms/touch-all")
		b.ReportMetric(float64(read)/float64(b.N)/(1<<20), "MiB-read")
	}
	b.Run("uffd", func(b *testing.B) {
		var total time.Duration
		var fetched, faults int64
		for i := 0; i < b.N; i++ {
			cb := open(b)
			sock := testServer(b, &Server{Open: cb.Image})
			out := runClient(b, helperConfig{Socket: sock, Image: fakeimage.Config{Pages: pages}, Pattern: "seq", Threads: 1, Method: "direct", NoCheck: true}, 300*time.Second)
			if out.code != exitOK {
				b.Fatalf("exit %d\n%s", out.code, out.stderr)
			}
			total += time.Duration(out.res.TouchNs)
			fetched += cb.Stats().BytesFetched
			faults += out.res.Stats.Faults
			cb.Close()
		}
		report(b, total, fetched)
		b.ReportMetric(float64(faults)/float64(b.N), "faults")
	})
	b.Run("eager-read", func(b *testing.B) {
		var total time.Duration
		var read int64
		buf := make([]byte, size)
		for i := 0; i < b.N; i++ {
			cb := open(b)
			img, err := cb.Image("memory")
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := img.ReadAt(buf, 0); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			read += cb.Stats().BytesFetched
			cb.Close()
		}
		report(b, total, read)
	})
	b.Run("mmap-fuse", func(b *testing.B) {
		var total time.Duration
		var read int64
		for i := 0; i < b.N; i++ {
			cb := open(b)
			dir := mountBundle(b, cb)
			out := runClient(b, helperConfig{Mode: "mmap", MapPath: filepath.Join(dir, "memory"), Image: fakeimage.Config{Pages: pages}, Pattern: "seq", Threads: 1, NoCheck: true}, 300*time.Second)
			if out.code != exitOK {
				b.Fatalf("exit %d\n%s", out.code, out.stderr)
			}
			total += time.Duration(out.res.TouchNs)
			read += cb.Stats().BytesFetched
		}
		report(b, total, read)
	})
}

// BenchmarkPrefetch: a "boot" touches 10% of a packed image in runs of 1..64
// pages at random places, in random order;
// its working set is recorded once, then the boot runs without prefetch,
// with the working set prefetched before the first touch, and with prefetch
// racing the touches. Reports faults and time from register to the last
// touch.
func BenchmarkPrefetch(b *testing.B) {
	size := benchMiB() << 20
	pages := size / PageSize
	_, raw := packMemory(b, size)
	bundlePath := filepath.Join(filepath.Dir(raw), "vm.smolmachine")
	boot := clusteredBoot(pages, 9)
	run := func(b *testing.B, ws *WorkingSet, wait, record bool) helperResult {
		b.Helper()
		cb, err := chunkstore.Open(bundlePath, chunkstore.Options{CacheBytes: size})
		if err != nil {
			b.Fatal(err)
		}
		defer cb.Close()
		sock := testServer(b, &Server{Open: cb.Image})
		out := runClient(b, helperConfig{Socket: sock, Image: fakeimage.Config{Pages: pages}, Pattern: "list", List: boot, NoCheck: true,
			Threads: 2, Method: "direct", Prefetch: ws, WaitPrefetch: wait, Record: record}, 300*time.Second)
		if out.code != exitOK {
			b.Fatalf("exit %d\n%s", out.code, out.stderr)
		}
		return out.res
	}
	ws := run(b, nil, false, true).WorkingSet
	for _, bb := range []struct {
		name string
		ws   *WorkingSet
		wait bool
	}{{"none", nil, false}, {"before-resume", ws, true}, {"concurrent", ws, false}} {
		b.Run(bb.name, func(b *testing.B) {
			var faults, ns, touchNs int64
			for i := 0; i < b.N; i++ {
				res := run(b, bb.ws, bb.wait, false)
				faults += res.Stats.Faults
				ns += res.TotalNs
				touchNs += res.TouchNs
			}
			b.ReportMetric(float64(touchNs)/float64(b.N)/1e6, "ms-touching")
			b.ReportMetric(float64(faults)/float64(b.N), "faults")
			b.ReportMetric(float64(ns)/float64(b.N)/1e6, "ms-to-boot")
			b.ReportMetric(float64(len(boot)), "pages-touched")
			b.ReportMetric(float64(ws.Pages()), "ws-pages")
		})
	}
}

// clusteredBoot picks ~10% of pages as runs of 1..64 pages, touched in a
// shuffled order of runs.
func clusteredBoot(pages int64, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, 3))
	var runs [][]int64
	for n := int64(0); n < pages/10; {
		start, l := r.Int64N(pages), 1+r.Int64N(64)
		var run []int64
		for p := start; p < min(start+l, pages); p++ {
			run = append(run, p)
		}
		runs = append(runs, run)
		n += int64(len(run))
	}
	r.Shuffle(len(runs), func(i, j int) { runs[i], runs[j] = runs[j], runs[i] })
	var out []int64
	for _, run := range runs {
		out = append(out, run...)
	}
	return out
}
