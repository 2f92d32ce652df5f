package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/registry/registrytest"
)

// checkRunOCI (issue 10's last "done when"): the bundle pushed to a real
// registry on 127.0.0.1 runs lazily as oci://REF: the clone keeps the
// counter and blob, and the registry bytes it fetched (the fresh shared
// cache's size once the command has run: manifest, frame index, state,
// faulted frames and the working set prefetch) stay a small part of the
// bundle.
func checkRunOCI(t *testing.T, root, dir, bundle, blobSHA string, c0 int) {
	reg := registrytest.Start(t)
	ref := reg.Host + "/smolvm/run:v1"
	if out, errOut, code := smolvmIn(t, root, 5*time.Minute, "push", "--insecure", bundle, ref); code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, out, errOut)
	}
	cache := filepath.Join(dir, "oci-cache")
	t.Setenv("XDG_CACHE_HOME", cache) // the daemon inherits it from run
	start := time.Now()
	out, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", "c-oci",
		"--ready-timeout", "150s", "--", "sh", "-c", cloneProbe)
	if code != 0 {
		t.Fatalf("run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, out, errOut)
	}
	wall := time.Since(start)
	p := parseProbe(t, out)
	if p.c1 < c0 || p.c2 <= p.c1 {
		t.Fatalf("counter after an oci:// restore: %d then %d (it was %d before the snapshot)", p.c1, p.c2, c0)
	}
	if p.blob != blobSHA {
		t.Fatalf("blob in guest RAM changed: %s, was %s", p.blob, blobSHA)
	}
	fetched := dirBytes(t, cache)
	stored := fileSize(t, bundle)
	if fetched == 0 {
		t.Fatalf("nothing in the shared cache %s after a lazy oci:// run", cache)
	}
	t.Logf("c-oci: %s", lastLine(errOut))
	t.Logf("figure: oci:// run: %.1f MiB fetched from the registry of %.1f MiB stored (%.1f%%), run wall %.2f s",
		float64(fetched)/(1<<20), float64(stored)/(1<<20), 100*float64(fetched)/float64(stored), wall.Seconds())
	if fetched > stored/2 {
		t.Fatalf("oci:// run fetched %d of the bundle's %d bytes: not lazy", fetched, stored)
	}
	// A second run finds the same daemon (keyed by reference and manifest
	// digest) and fetches nothing more for what the first one read.
	out, errOut, code = smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", "c-oci2",
		"--ready-timeout", "150s", "--", "sh", "-c", cloneProbe)
	if code != 0 {
		t.Fatalf("second run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, out, errOut)
	}
	if p2 := parseProbe(t, out); p2.blob != blobSHA {
		t.Fatalf("second oci:// clone: blob %s, want %s", p2.blob, blobSHA)
	}
	t.Logf("c-oci2: %s", lastLine(errOut))
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}

// fetchReport says where a cold oci:// run's registry bytes went: the
// request log ($SMOLVM_REGISTRY_LOG of run and daemon) and the frames in the
// fresh shared cache, classed by what they hold, against the bundle pushed.
type fetchReport struct {
	requests, demand, prefetch int   // range requests (each attempt)
	netBytes                   int64 // bytes asked for by them
	dupFrames                  int   // frames fetched more than once
	dupBytes                   int64
	// Frames in the cache: holding working-set pages, other memory, state,
	// anything else (bytes, count).
	ws, mem, state, other     int64
	wsN, memN, stateN, otherN int
	wsFrames                  int   // frames of the bundle holding working-set pages
	wsFrameBytes              int64 // their compressed bytes
	wsPages                   int64
	hotBytes                  int64 // the working-set pages alone, compressed 32 to a frame in list order
	tailBytes, frameData      int64
	configN                   int // config (TOC) fetches, by all processes
	configBytes               int64
	readyN                    int   // requests and config fetches started before ready
	readyBytes                int64 // their bytes
	runRequests, runFrames    int   // working-set runs (prefetch, demand-run): requests, frames
}

func (r fetchReport) String() string {
	mib := func(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 2, 64) }
	return fmt.Sprintf("config (TOC) fetched %d times (%s MiB); %d range requests (%d demand, %d prefetch, %s MiB; working-set runs: %d frames in %d requests; %d frames fetched twice, %s MiB); "+
		"cache: working-set frames %d (%s MiB), other memory %d (%s MiB), state %d (%s MiB), other %d (%s MiB); "+
		"the bundle's working-set frames %d (%s MiB, %d pages), those pages alone compressed %s MiB; bundle frames %s MiB, TOC+manifest %s MiB",
		r.configN, mib(r.configBytes), r.requests, r.demand, r.prefetch, mib(r.netBytes), r.runFrames, r.runRequests, r.dupFrames, mib(r.dupBytes),
		r.wsN, mib(r.ws), r.memN, mib(r.mem), r.stateN, mib(r.state), r.otherN, mib(r.other),
		r.wsFrames, mib(r.wsFrameBytes), r.wsPages, mib(r.hotBytes), mib(r.frameData), mib(r.tailBytes))
}

// ociFetchReport reads the request log and the cache; requests (config
// fetches included) that started before ready count in beforeReady.
func ociFetchReport(t *testing.T, bundle, cache, logPath string, ready time.Time) fetchReport {
	t.Helper()
	var r fetchReport
	if b, err := os.ReadFile(logPath); err == nil {
		type rec struct {
			Time   string `json:"t"`
			Why    string `json:"why"`
			Blob   string `json:"blob"`
			Off    int64  `json:"off"`
			Len    int64  `json:"len"`
			Frames int    `json:"frames"`
			Err    string `json:"err"`
		}
		seen := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var q rec
			if json.Unmarshal([]byte(line), &q) != nil {
				continue
			}
			if at, err := time.Parse(time.RFC3339Nano, q.Time); err == nil && at.Before(ready) {
				r.readyN++
				r.readyBytes += q.Len
			}
			if q.Why == "config" {
				r.configN++
				r.configBytes += q.Len
				continue
			}
			r.requests++
			r.netBytes += q.Len
			switch q.Why {
			case "demand", "demand-run":
				r.demand++
			case "prefetch":
				r.prefetch++
			}
			if q.Why == "prefetch" || q.Why == "demand-run" {
				r.runRequests++
				r.runFrames += q.Frames
			}
			k := q.Blob + "@" + strconv.FormatInt(q.Off, 10)
			if q.Err == "" {
				if seen[k]++; seen[k] == 2 {
					r.dupFrames++
				}
				if seen[k] >= 2 {
					r.dupBytes += q.Len
				}
			}
		}
	}
	cb, err := chunkstore.Open(bundle, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	fr := cb.Format()
	class := map[int]string{}
	for _, a := range fr.Manifest().Artifacts {
		for _, e := range a.Extents {
			if _, ok := class[int(e.Frame)]; !ok || a.Name == "memory" {
				class[int(e.Frame)] = a.Name
			}
		}
	}
	man := fr.Manifest()
	wsFrame := map[int32]bool{}
	mem := man.Artifact("memory")
	im, err := cb.Image("memory")
	if err != nil {
		t.Fatal(err)
	}
	var hot []byte
	page := make([]byte, format.PageSize)
	flush := func() {
		if len(hot) > 0 {
			r.hotBytes += int64(len(format.EncodeFrame(nil, hot)))
			hot = hot[:0]
		}
	}
	for _, pr := range man.WorkingSet {
		for pg := pr.Page; pg < pr.Page+pr.Count; pg++ {
			e, ok := mem.Locate(pg)
			if !ok {
				continue // a zero page: never stored, never fetched
			}
			r.wsPages++
			if !wsFrame[e.Frame] {
				wsFrame[e.Frame] = true
				r.wsFrameBytes += fr.Frame(int(e.Frame)).Length
			}
			if _, err := im.ReadAt(page, pg*format.PageSize); err != nil {
				t.Fatal(err)
			}
			if hot = append(hot, page...); len(hot) == 32*format.PageSize {
				flush()
			}
		}
	}
	flush()
	r.wsFrames = len(wsFrame)
	for i := range fr.Frames() {
		r.frameData += fr.Frame(i).Length
	}
	r.tailBytes = fr.Size() - fr.Trailer().TOCOffset
	_ = filepath.WalkDir(filepath.Join(cache, "smolvm", "frames"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		dg, err := format.ParseDigest("sha256:" + d.Name())
		if err != nil {
			return nil
		}
		i, ok := fr.FrameIndex(dg)
		if !ok {
			r.other += fileSize(t, p)
			r.otherN++
			return nil
		}
		n := fr.Frame(i).Length
		switch {
		case wsFrame[int32(i)]:
			r.ws, r.wsN = r.ws+n, r.wsN+1
		case class[i] == "memory":
			r.mem, r.memN = r.mem+n, r.memN+1
		case class[i] == "state":
			r.state, r.stateN = r.state+n, r.stateN+1
		default:
			r.other, r.otherN = r.other+n, r.otherN+1
		}
		return nil
	})
	return r
}

// keepForStudy copies files into $SMOLVM_KEEP_DIR (a lab share) when set.
func keepForStudy(t *testing.T, name string, paths ...string) {
	keep := os.Getenv("SMOLVM_KEEP_DIR")
	if keep == "" {
		return
	}
	dst := filepath.Join(keep, name)
	args := append([]string{"-a"}, paths...)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Logf("keep: %v", err)
		return
	}
	if out, err := exec.Command("cp", append(args, dst)...).CombinedOutput(); err != nil {
		t.Logf("keep %v: %v: %s", paths, err, out)
	}
}
