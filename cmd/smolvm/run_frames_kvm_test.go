package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/registry/registrytest"
	"github.com/smolvm/smolvm/snapshot"
)

// checkFramePages repacks the snapshot with 8, 16 and 32 pages per frame,
// records each one's working set (page by page; the bundle is rewritten
// with those pages in frames of their own) and restores it (uffd,
// working set copied in before the vCPUs run): guest RAM read before ready
// stays within 10% of RAM whatever the frame size; then the same bundle
// runs from a registry with a cold cache, where smaller frames fetch fewer
// bytes for the same pages. Figures are logged for docs/SNAPSHOT.md.
func checkFramePages(t *testing.T, root, dir, bundle, blobSHA string) {
	read := map[int]int64{}
	ociPct := map[string]float64{}
	var memBytes int64
	reg := registrytest.Start(t)
	for _, n := range []int{32, 16, 8} {
		out := filepath.Join(dir, "frames"+strconv.Itoa(n)+".smolmachine")
		repackBundle(t, bundle, out, n)
		ws, err := snapshot.RecordWorkingSet(context.Background(), out, snapshot.RecordOptions{ReadyTimeout: 150 * time.Second})
		if err != nil {
			t.Fatalf("%d pages per frame: record working set: %v", n, err)
		}
		stats := filepath.Join(dir, "frames"+strconv.Itoa(n)+".json")
		name := "c-frames" + strconv.Itoa(n)
		o, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", out, "--name", name, "--ready-timeout", "150s", "--stats", stats,
			"--", "sh", "-c", cloneProbe)
		if code != 0 {
			t.Fatalf("run %s: exit %d\nstdout: %s\nstderr: %s", out, code, o, errOut)
		}
		if p := parseProbe(t, o); p.blob != blobSHA || p.c2 <= p.c1 {
			t.Fatalf("%d pages per frame: blob %s (want %s), counter %d then %d", n, p.blob, blobSHA, p.c1, p.c2)
		}
		st := readRunStats(t, stats)
		read[n], memBytes = st.Memory.BytesRead, st.MemBytes
		pct := runOCICold(t, root, dir, reg, strconv.Itoa(n), out, name+"-oci")
		ociPct[strconv.Itoa(n)] = pct
		t.Logf("figure: %d pages/frame: bundle %.1f MiB, working set %.1f MiB, RAM read before ready %.1f MiB (%.1f%% of %d MiB), ready %.3f s",
			n, float64(fileSize(t, out))/(1<<20), float64(ws.Pages())*4096/(1<<20), float64(st.Memory.BytesRead)/(1<<20),
			100*float64(st.Memory.BytesRead)/float64(st.MemBytes), st.MemBytes>>20, st.ReadyS)
	}
	t.Logf("figure: oci:// cold run, fetched before ready / stored, working-set layout (snapshot.SetWorkingSet): 32 pages/frame %.1f%%, 16 %.1f%%, 8 %.1f%% (goal 15%%) [nested TCG]",
		ociPct["32"], ociPct["16"], ociPct["8"])
	// Issue 10's goal: RecordWorkingSet lays the working set out in frames
	// of its own (first touch first), so a lazy start with the default 32
	// pages per frame fetches <= 15% of the stored bytes before ready (lab,
	// test-built layout: 9.9-10.8%; address-ordered frames: 25.6-26.5%,
	// docs/REGISTRY.md).
	if ociPct["32"] > 15 {
		t.Errorf("32 pages per frame, working-set layout: %.1f%% of the stored bytes fetched before ready, goal 15%%", ociPct["32"])
	}
	for n, b := range read {
		if b > memBytes/10 {
			t.Errorf("%d pages per frame: %d bytes of guest RAM read before ready, more than 10%% of %d", n, b, memBytes)
		}
	}
}

// runOCICold pushes bundle as frames:label and runs it from the registry
// with a fresh cache (run and daemon share it); it logs where the fetched
// bytes went and returns the bytes fetched before ready (range requests
// and config, from the request log) as a percentage of the bundle's size.
func runOCICold(t *testing.T, root, dir string, reg *registrytest.Registry, label, bundle, name string) float64 {
	t.Helper()
	ref := reg.Host + "/smolvm/frames:" + label
	if o, errOut, code := smolvmIn(t, root, 5*time.Minute, "push", "--insecure", bundle, ref); code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, o, errOut)
	}
	cache := filepath.Join(dir, "frames-cache"+label)
	t.Setenv("XDG_CACHE_HOME", cache)
	reqLog := filepath.Join(dir, "frames-requests"+label+".jsonl")
	t.Setenv(registry.LogEnv, reqLog) // run and its daemon log every range request
	stats := filepath.Join(dir, "frames-oci"+label+".json")
	start := time.Now()
	o, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", name, "--ready-timeout", "150s",
		"--stats", stats, "--", "cat", "/tmp/counter")
	if code != 0 {
		t.Fatalf("run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, o, errOut)
	}
	if _, err := strconv.Atoi(lastLine(o)); err != nil {
		t.Fatalf("run oci://%s: counter %q", ref, o)
	}
	st := readRunStats(t, stats)
	// Ready as the test's clock sees it: the run's ready_s counts from its
	// own start, a little after ours; 0.3 s more leans to counting a
	// request that started just after ready rather than missing one.
	ready := start.Add(time.Duration((st.ReadyS + 0.3) * float64(time.Second)))
	fetched, stored := dirBytes(t, cache), fileSize(t, bundle)
	rep := ociFetchReport(t, bundle, cache, reqLog, ready)
	t.Logf("figure: %s pages/frame: oci:// run: %v", label, rep)
	keepForStudy(t, "frames"+label, bundle, cache, reqLog, stats)
	pct := 100 * float64(rep.readyBytes) / float64(stored)
	t.Logf("figure: %s pages/frame: %.1f%% of stored bytes fetched before ready (%.2f of %.2f MiB, %d requests; by the command's end %.2f MiB, %.1f%%) [nested TCG]: %s",
		label, pct, float64(rep.readyBytes)/(1<<20), float64(stored)/(1<<20), rep.readyN,
		float64(fetched)/(1<<20), 100*float64(fetched)/float64(stored), lastLine(errOut))
	// One request per frame however many readers (pager, prefetch), and the
	// working set's frames come in runs, not one by one.
	if rep.dupFrames > 0 {
		t.Errorf("%s: %d frames fetched more than once (%d bytes)", label, rep.dupFrames, rep.dupBytes)
	}
	if rep.runFrames >= 2 && rep.runRequests >= rep.runFrames {
		t.Errorf("%s: the working-set prefetch took %d range requests for %d frames: nothing coalesced", label, rep.runRequests, rep.runFrames)
	}
	return pct
}

// repackBundle writes src's artifacts again as dst with framePages pages
// per frame (no working set: RecordWorkingSet adds one).
func repackBundle(t *testing.T, src, dst string, framePages int) {
	t.Helper()
	b, err := chunkstore.Open(src, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	man := b.Manifest()
	tmp := t.TempDir()
	po := chunkstore.PackOptions{Manifest: *man, FramePages: framePages}
	po.Manifest.Artifacts, po.Manifest.WorkingSet = nil, nil
	for _, a := range man.Artifacts {
		p := filepath.Join(tmp, strconv.Itoa(len(po.Inputs)))
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(a.Size); err != nil {
			t.Fatal(err)
		}
		err = b.Extract(context.Background(), a.Name, f, nil)
		f.Close()
		if err != nil {
			t.Fatalf("extract %s: %v", a.Name, err)
		}
		po.Inputs = append(po.Inputs, chunkstore.PackInput{Name: a.Name, Path: p})
	}
	if _, err := chunkstore.Pack(context.Background(), dst, po); err != nil {
		t.Fatalf("repack %s with %d pages per frame: %v", src, framePages, err)
	}
}
