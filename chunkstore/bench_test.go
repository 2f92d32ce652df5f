package chunkstore

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
	"golang.org/x/sys/unix"
)

// The benchmark image: 256 MiB by default (60% zero, 20% random, 20%
// text-like pages in runs), small enough for a 2-core machine; set
// SMOLVM_BENCH_MIB=1024 for the 1 GiB.
var (
	benchOnce sync.Once
	benchImg  string
	benchSize int64
	benchErr  error
)

func benchImage(b *testing.B) (string, int64) {
	benchOnce.Do(func() {
		mib := int64(256)
		if s := os.Getenv("SMOLVM_BENCH_MIB"); s != "" {
			mib, benchErr = strconv.ParseInt(s, 10, 64)
		}
		benchDir, benchErr = os.MkdirTemp("", "smolvm-bench-")
		if benchErr != nil {
			return
		}
		benchSize = mib << 20
		benchImg = filepath.Join(benchDir, "mem.img")
		benchErr = sampleimage.WriteFile(benchImg, benchSize, sampleimage.MemoryMix, 1)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchImg, benchSize
}

func benchBundle(b *testing.B, framePages int) string {
	img, _ := benchImage(b)
	out := filepath.Join(benchDir, fmt.Sprintf("b%d.smolmachine", framePages))
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if _, err := Pack(context.Background(), out, PackOptions{FramePages: framePages, Inputs: []PackInput{{Name: "memory", Path: img}}}); err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkPack packs the image at several frame sizes, reporting pack speed
// (MB/s of image), compression ratio of the data pages, and what a cold
// random 4 KiB read of a data page costs: compressed bytes fetched, bytes
// decompressed, and time.
func BenchmarkPack(b *testing.B) {
	for _, fp := range []int{16, 32, 64, 128} {
		b.Run(fmt.Sprintf("frame=%dKiB", fp*4), func(b *testing.B) {
			img, size := benchImage(b)
			b.SetBytes(size)
			out := filepath.Join(benchDir, fmt.Sprintf("b%d.smolmachine", fp))
			var res *PackResult
			var err error
			for b.Loop() {
				res, err = Pack(context.Background(), out, PackOptions{FramePages: fp, Inputs: []PackInput{{Name: "memory", Path: img}}})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.DataPages*format.PageSize)/float64(res.NewBytes), "compression")
			fetched, decoded, us := randomReads(b, out, 2000)
			b.ReportMetric(fetched, "fetchedB/4KiB-read")
			b.ReportMetric(decoded/format.PageSize, "read-amplification")
			b.ReportMetric(us, "us/4KiB-read")
		})
	}
}

// randomReads does n cold 4 KiB reads of random data pages (no cache) and
// returns compressed bytes fetched and bytes decompressed per read, and
// microseconds per read.
func randomReads(b *testing.B, path string, n int) (fetched, decoded, us float64) {
	bd, err := Open(path, Options{CacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	im, _ := bd.Image("memory")
	var pages []int64
	for _, e := range im.Extents() {
		for p := e.Page; p < e.End(); p++ {
			pages = append(pages, p)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, format.PageSize)
	start := time.Now()
	for i := 0; i < n; i++ {
		if _, err := im.ReadAt(buf, pages[r.IntN(len(pages))]*format.PageSize); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	s := bd.Stats()
	return float64(s.BytesFetched) / float64(n), float64(s.BytesDecoded) / float64(n), float64(el.Microseconds()) / float64(n)
}

// BenchmarkPackVsZstd puts pack (to /dev/null, default frame size) next to
// `zstd -1 -T0` followed by `sha256sum` over the same file, and reports the
// ratio of their speeds.
func BenchmarkPackVsZstd(b *testing.B) {
	if _, err := exec.LookPath("zstd"); err != nil {
		b.Skip("zstd not installed (scripts/deps.sh installs it): no reference to compare with")
	}
	if _, err := exec.LookPath("sha256sum"); err != nil {
		b.Skip("sha256sum not installed: no reference to compare with")
	}
	img, size := benchImage(b)
	b.SetBytes(size)
	var packT, refT, packCPU, refCPU time.Duration
	for b.Loop() {
		t0, c0 := time.Now(), cpuTime(unix.RUSAGE_SELF)
		if _, err := PackTo(context.Background(), io.Discard, PackOptions{Inputs: []PackInput{{Name: "memory", Path: img}}}); err != nil {
			b.Fatal(err)
		}
		t1, c1, k1 := time.Now(), cpuTime(unix.RUSAGE_SELF), cpuTime(unix.RUSAGE_CHILDREN)
		if out, err := exec.Command("sh", "-c", `zstd -q -1 -T0 -c "$1" >/dev/null && sha256sum "$1" >/dev/null`, "sh", img).CombinedOutput(); err != nil {
			b.Fatalf("zstd/sha256sum: %v: %s", err, out)
		}
		packT += t1.Sub(t0)
		refT += time.Since(t1)
		packCPU += c1 - c0
		refCPU += cpuTime(unix.RUSAGE_CHILDREN) - k1
	}
	n := float64(b.N)
	mb := float64(size) / 1e6
	b.ReportMetric(mb/(packT.Seconds()/n), "pack-MB/s")
	b.ReportMetric(mb/(refT.Seconds()/n), "zstd+sha256sum-MB/s")
	b.ReportMetric(refT.Seconds()/packT.Seconds(), "pack/ref-speed")
	// CPU time does not depend on how busy the machine is: MB per CPU
	// second, and what both cores would give if the process had them.
	b.ReportMetric(mb/(packCPU.Seconds()/n), "pack-MB/cpu-s")
	b.ReportMetric(mb/(refCPU.Seconds()/n), "ref-MB/cpu-s")
}

// cpuTime is the user+system CPU time of this process or its waited-for
// children.
func cpuTime(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkVerify verifies the default bundle; MB/s are of image bytes,
// verified-MB/s of decompressed frame bytes.
func BenchmarkVerify(b *testing.B) {
	path := benchBundle(b, format.DefaultFramePages)
	_, size := benchImage(b)
	bd, err := Open(path, Options{CacheBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer bd.Close()
	b.SetBytes(size)
	var res VerifyResult
	c0 := cpuTime(unix.RUSAGE_SELF)
	for b.Loop() {
		if res, err = bd.Verify(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
	cpu := (cpuTime(unix.RUSAGE_SELF) - c0).Seconds() / float64(b.N)
	b.ReportMetric(float64(res.Pages*format.PageSize)/1e6/res.Seconds, "verified-MB/s")
	b.ReportMetric(float64(size)/1e6/cpu, "MB/cpu-s")
}

// BenchmarkExtract extracts the memory image to a file (holes for zeros).
func BenchmarkExtract(b *testing.B) {
	path := benchBundle(b, format.DefaultFramePages)
	_, size := benchImage(b)
	b.SetBytes(size)
	out := filepath.Join(benchDir, "extract.img")
	c0 := cpuTime(unix.RUSAGE_SELF)
	for b.Loop() {
		bd, err := Open(path, Options{CacheBytes: 64 << 20})
		if err != nil {
			b.Fatal(err)
		}
		f, err := CreateAtomic(out)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		if err := bd.Extract(context.Background(), "memory", f, nil); err != nil {
			b.Fatal(err)
		}
		if err := f.Commit(); err != nil {
			b.Fatal(err)
		}
		bd.Close()
	}
	cpu := (cpuTime(unix.RUSAGE_SELF) - c0).Seconds() / float64(b.N)
	b.ReportMetric(float64(size)/1e6/cpu, "MB/cpu-s")
}
