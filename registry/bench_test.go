package registry

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
	"golang.org/x/sys/unix"
)

// benchMiB is the benchmark image size (SMOLVM_BENCH_MIB, default 256).
func benchMiB() int64 {
	if n, err := strconv.Atoi(os.Getenv("SMOLVM_BENCH_MIB")); err == nil && n > 0 {
		return int64(n)
	}
	return 256
}

// BenchmarkPull: a cold pull (empty cache) of a pushed bundle, against curl
// fetching the same pack blobs from the same registry into files.
// Reports MB/s of bundle written and of network bytes for both, and the
// upload rate of the one push that set it up.
func BenchmarkPull(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skip("curl missing")
	}
	reg := startRegistry(b)
	dir := b.TempDir()
	bundle, _ := makeBundle(b, dir, benchMiB()<<20, 21, "")
	ref := reg.Host + "/bench:pull"
	pr, err := Push(ctxT(b), bundle, ref, PushOptions{Remote: local})
	if err != nil {
		b.Fatal(err)
	}
	lz, err := Open(ctxT(b), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c")})
	if err != nil {
		b.Fatal(err)
	}
	packs := lz.src.cfg.Packs
	lz.Close()
	var netBytes, bundleBytes int64
	var pullSec, curlSec, pullCPU, curlCPU float64
	b.ResetTimer()
	for i := range b.N {
		cache := filepath.Join(dir, "cache-"+strconv.Itoa(i))
		out := filepath.Join(dir, "out.smolmachine")
		cpu0 := cpuSeconds(unix.RUSAGE_SELF)
		res, err := Pull(ctxT(b), ref, out, PullOptions{Remote: local, CacheDir: cache})
		if err != nil {
			b.Fatal(err)
		}
		pullCPU += cpuSeconds(unix.RUSAGE_SELF) - cpu0
		pullSec += res.Seconds
		netBytes, bundleBytes = res.Net.Bytes, res.BundleBytes
		os.RemoveAll(cache)
		os.Remove(out)

		cdir := filepath.Join(dir, "curl")
		os.MkdirAll(cdir, 0o755)
		args := []string{"-sfS"}
		for j, p := range packs {
			args = append(args, "-o", filepath.Join(cdir, strconv.Itoa(j)), "http://"+reg.Host+"/v2/bench/blobs/"+p.Digest)
		}
		start, cpu0 := time.Now(), cpuSeconds(unix.RUSAGE_CHILDREN)
		if out, err := exec.Command(curl, args...).CombinedOutput(); err != nil {
			b.Fatalf("curl: %v %s", err, out)
		}
		curlSec += time.Since(start).Seconds()
		curlCPU += cpuSeconds(unix.RUSAGE_CHILDREN) - cpu0
		os.RemoveAll(cdir)
	}
	n := float64(b.N)
	b.ReportMetric(float64(netBytes)/1e6/(pullSec/n), "pull-net-MB/s")
	b.ReportMetric(float64(bundleBytes)/1e6/(pullSec/n), "pull-bundle-MB/s")
	b.ReportMetric(float64(pr.UploadedBytes)/1e6/(curlSec/n), "curl-MB/s")
	b.ReportMetric(float64(bundleBytes)/1e6, "bundle-MB")
	b.ReportMetric(float64(bundleBytes)/1e6/(pullCPU/n), "pull-MB/CPU-s")
	b.ReportMetric(float64(pr.UploadedBytes)/1e6/(curlCPU/n), "curl-MB/CPU-s")
	b.ReportMetric(float64(pr.UploadedBytes)/1e6/pr.Seconds, "first-push-MB/s")
}

// cpuSeconds is user+system CPU time of this process (RUSAGE_SELF) or of
// its waited-for children (RUSAGE_CHILDREN: curl; the registry is still
// running, so not counted).
func cpuSeconds(who int) float64 {
	var ru unix.Rusage
	unix.Getrusage(who, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchmarkLazyRandomPages: bytes fetched from the registry to read N random
// 4 KiB pages of memory through a lazy bundle (cold cache).
func BenchmarkLazyRandomPages(b *testing.B) {
	reg := startRegistry(b)
	dir := b.TempDir()
	bundle, _ := makeBundle(b, dir, benchMiB()<<20, 22, "")
	ref := reg.Host + "/bench:lazy"
	if _, err := Push(ctxT(b), bundle, ref, PushOptions{Remote: local}); err != nil {
		b.Fatal(err)
	}
	const pages = 100
	var fetched, requests, size, dataPages int64
	b.ResetTimer()
	for i := range b.N {
		lz, err := Open(ctxT(b), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c"+strconv.Itoa(i))})
		if err != nil {
			b.Fatal(err)
		}
		im, _ := lz.Image("memory")
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		buf := make([]byte, format.PageSize)
		for range pages {
			pg := rng.Int64N(im.Size() / format.PageSize)
			if _, ok := im.Locate(pg); ok {
				dataPages++
			}
			if _, err := im.ReadAt(buf, pg*format.PageSize); err != nil {
				b.Fatal(err)
			}
		}
		ns := lz.NetStats()
		fetched += ns.Bytes
		requests += ns.Requests
		size = lz.Format().Size()
		lz.Close()
	}
	n := float64(b.N)
	b.ReportMetric(float64(fetched)/n/1e3, "KB-fetched/100-pages")
	b.ReportMetric(float64(requests)/n, "requests/100-pages")
	b.ReportMetric(float64(dataPages)/n, "data-pages/100")
	b.ReportMetric(100*float64(fetched)/n/float64(size), "%-of-bundle")
}
