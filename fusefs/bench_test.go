package fusefs

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"golang.org/x/sys/unix"
)

// Benchmarks read a real bundle through chunkstore: a 256 MiB memory image
// (FUSEFS_BENCH_MIB overrides) of incompressible pages with runs of zero
// pages, in format.DefaultFramePages frames.
func benchSpec(b *testing.B) fakeSpec { return benchSpecFrames(b, format.DefaultFramePages) }

func benchSpecFrames(b *testing.B, framePages int) fakeSpec {
	mib := int64(256)
	if s := os.Getenv("FUSEFS_BENCH_MIB"); s != "" {
		mib, _ = strconv.ParseInt(s, 10, 64)
	}
	spec := fakeSpec{FramePages: framePages, Real: true, CacheBytes: 2 * mib << 20,
		Images: []fakeImageSpec{{Name: "memory", Size: mib << 20, Seed: 21}}}
	spec.BundlePath = writeSpecBundle(b, spec)
	return spec
}

// extractPlain writes the memory artifact out as a plain file (what
// `smolvm extract` does) and returns its path and how long it took.
func extractPlain(b *testing.B, spec fakeSpec) (string, time.Duration) {
	cb, err := chunkstore.Open(spec.BundlePath, chunkstore.Options{CacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer cb.Close()
	path := filepath.Join(b.TempDir(), "memory")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := cb.Extract(context.Background(), "memory", f, nil); err != nil {
		b.Fatal(err)
	}
	if err := f.Truncate(spec.Images[0].Size); err != nil {
		b.Fatal(err)
	}
	return path, time.Since(start)
}

// readAll reads path sequentially with buf-sized reads; drop first evicts
// the file's pages from the page cache.
func readAll(b *testing.B, path string, buf []byte, drop bool) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if drop {
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

// plainMBps measures sequential reads of the extracted file from the page
// cache (drop=false) or after evicting it (drop=true).
func plainMBps(b *testing.B, path string, drop bool) float64 {
	buf := make([]byte, 1<<20)
	readAll(b, path, buf, false)
	best := 0.0
	for range 3 {
		start := time.Now()
		n := readAll(b, path, buf, drop)
		best = max(best, mbps(n, time.Since(start)))
	}
	return best
}

// BenchmarkSeqRead: sequential 1 MiB reads of memory through the mount,
// reported as MB/s and as a ratio to reading the extracted plain file.
//   - pagecache: the mount's pages are in the kernel page cache
//     (FOPEN_KEEP_CACHE), vs the plain file from the page cache.
//   - daemonwarm: pages evicted before each pass, so every byte goes
//     through FUSE from the daemon's warm frame cache; vs the plain file
//     from the page cache (x_plain) and evicted (x_plain_disk).
//   - cold: a fresh daemon each pass (fetch, verify, decompress every
//     frame) vs extracting the artifact (x_extract).
func BenchmarkSeqRead(b *testing.B) {
	requireFUSE(b)
	spec := benchSpec(b)
	size := spec.Images[0].Size
	plain, extractTime := extractPlain(b, spec)
	plainCached, plainDisk := plainMBps(b, plain, false), plainMBps(b, plain, true)
	buf := make([]byte, 1<<20)
	type variant struct {
		maxRead, readAheadKB int
		copyReads            bool
	}
	variants := []variant{{128 << 10, -1, false}, {1 << 20, -1, false}, {1 << 20, 1024, false}, {1 << 20, 4096, false}, {1 << 20, 1024, true}}
	name := func(v variant) string {
		ra := "kernel"
		if v.readAheadKB > 0 {
			ra = strconv.Itoa(v.readAheadKB) + "K"
		}
		reply := "vector"
		if v.copyReads {
			reply = "copy"
		}
		return fmt.Sprintf("maxread=%dK/readahead=%s/%s", v.maxRead>>10, ra, reply)
	}
	b.Run("pagecache/readahead=kernel", func(b *testing.B) { benchPageCache(b, spec, -1, plainCached) })
	b.Run("pagecache/readahead=1024K", func(b *testing.B) { benchPageCache(b, spec, 1024, plainCached) })
	b.Run("pagecache/readahead=4096K", func(b *testing.B) { benchPageCache(b, spec, 4096, plainCached) })
	for _, v := range variants {
		b.Run("daemonwarm/"+name(v), func(b *testing.B) {
			s := serve(b, spec, &Options{MaxRead: v.maxRead, ReadAheadKB: v.readAheadKB, CopyReads: v.copyReads})
			path := filepath.Join(s.dir, "memory")
			readAll(b, path, buf, true)
			b.SetBytes(size)
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				readAll(b, path, buf, true)
			}
			got := mbps(size*int64(b.N), time.Since(start))
			b.ReportMetric(got/plainCached, "x_plain")
			b.ReportMetric(got/plainDisk, "x_plain_disk")
			fst, _ := readStats(b, s.dir)
			b.ReportMetric(float64(fst.MaxReadBytes>>10), "max_read_KiB")
		})
	}
	for _, v := range variants[1:] {
		b.Run("cold/"+name(v), func(b *testing.B) {
			b.SetBytes(size)
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				s := serve(b, spec, &Options{MaxRead: v.maxRead, ReadAheadKB: v.readAheadKB, CopyReads: v.copyReads})
				path := filepath.Join(s.dir, "memory")
				b.StartTimer()
				start := time.Now()
				readAll(b, path, buf, false)
				total += time.Since(start)
			}
			got := mbps(size*int64(b.N), total)
			b.ReportMetric(got/mbps(size, extractTime), "x_extract")
		})
	}
	b.Logf("plain file: %.0f MB/s from page cache, %.0f MB/s evicted; extract %.0f MB/s", plainCached, plainDisk, mbps(size, extractTime))
}

// benchPageCache: sequential reads with the mount's pages already in the
// page cache (FOPEN_KEEP_CACHE keeps them across opens), vs the plain file.
func benchPageCache(b *testing.B, spec fakeSpec, readAheadKB int, plainCached float64) {
	size := spec.Images[0].Size
	buf := make([]byte, 1<<20)
	s := serve(b, spec, &Options{ReadAheadKB: readAheadKB})
	path := filepath.Join(s.dir, "memory")
	readAll(b, path, buf, false)
	b.SetBytes(size)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		readAll(b, path, buf, false)
	}
	b.ReportMetric(mbps(size*int64(b.N), time.Since(start))/plainCached, "x_plain")
}

// BenchmarkRandom4K: 4 KiB reads at random pages of memory on a fresh
// daemon (cold cache), FADV_RANDOM: read amplification is the bytes fetched
// from the bundle (compressed) and decoded per byte read.
func BenchmarkRandom4K(b *testing.B) {
	requireFUSE(b)
	for _, fp := range []int{16, 32, 64} {
		spec := benchSpecFrames(b, fp)
		for _, reads := range []int{300, 3000} {
			b.Run(fmt.Sprintf("frame=%dK/reads=%d", fp*4, reads), func(b *testing.B) { benchRandom4K(b, spec, reads) })
		}
	}
}

func benchRandom4K(b *testing.B, spec fakeSpec, reads int) {
	size := spec.Images[0].Size
	var fetched, decoded, read float64
	var elapsed time.Duration
	rng := rand.New(rand.NewPCG(5, 6))
	buf := make([]byte, 4096)
	for b.Loop() {
		b.StopTimer()
		s := serve(b, spec, nil)
		f, err := os.Open(filepath.Join(s.dir, "memory"))
		if err != nil {
			b.Fatal(err)
		}
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		b.StartTimer()
		start := time.Now()
		for range reads {
			if _, err := f.ReadAt(buf, rng.Int64N(size/4096)*4096); err != nil {
				b.Fatal(err)
			}
		}
		elapsed += time.Since(start)
		b.StopTimer()
		f.Close()
		data, err := os.ReadFile(filepath.Join(s.dir, StatsName))
		if err != nil {
			b.Fatal(err)
		}
		_, raw, _ := ParseStats(data)
		var st chunkstore.Stats
		if err := jsonUnmarshal(raw, &st); err != nil {
			b.Fatal(err)
		}
		fetched += float64(st.BytesFetched)
		decoded += float64(st.BytesDecoded)
		read += float64(reads * 4096)
		b.StartTimer()
	}
	b.ReportMetric(fetched/read, "fetched/read")
	b.ReportMetric(decoded/read, "decoded/read")
	b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N*reads), "us/read")
}

// BenchmarkMmap16: 16 processes map memory MAP_PRIVATE, read all of it and
// dirty one page in 64. Reported, for the mappings of memory only (from
// /proc/PID/smaps): their summed RSS and PSS and their private (copied)
// memory; and the growth of the host page cache; in MiB, next to the image
// size: clean pages are shared through the page cache.
func BenchmarkMmap16(b *testing.B) {
	requireFUSE(b)
	spec := benchSpec(b)
	is := spec.Images[0]
	for b.Loop() {
		b.StopTimer()
		s := serve(b, spec, nil)
		cached0 := meminfo(b, "Cached")
		b.StartTimer()
		path := filepath.Join(s.dir, "memory")
		ms := startMappers(b, 16, path, is)
		b.StopTimer()
		var rss, pss, priv int64
		for _, m := range ms {
			r, err := smapsOf(m.cmd.Process.Pid, path)
			if err != nil {
				b.Fatal(err)
			}
			rss += r["Rss"]
			pss += r["Pss"]
			priv += r["Private_Dirty"] + r["Private_Clean"]
		}
		b.ReportMetric(float64(is.Size>>20), "image_MiB")
		b.ReportMetric(float64(rss>>10), "rss_sum_MiB")
		b.ReportMetric(float64(pss>>10), "pss_sum_MiB")
		b.ReportMetric(float64(priv>>10), "private_sum_MiB")
		b.ReportMetric(float64((meminfo(b, "Cached")-cached0)>>10), "pagecache_growth_MiB")
		for _, m := range ms {
			m.stdin.Close()
		}
		b.StartTimer()
	}
}

// meminfo returns a /proc/meminfo field in kB.
func meminfo(b *testing.B, field string) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	b.Fatalf("meminfo: no %s", field)
	return 0
}
