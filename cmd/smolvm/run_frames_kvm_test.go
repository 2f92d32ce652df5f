package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/registry/registrytest"
	"github.com/smolvm/smolvm/snapshot"
)

// checkFramePages repacks the snapshot with 8, 16 and 32 pages per frame,
// records each one's working set (page by page) and restores it (uffd,
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
		var st runStatsFile
		b, err := os.ReadFile(stats)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		read[n], memBytes = st.Memory.BytesRead, st.MemBytes
		pct := runOCICold(t, root, dir, reg, strconv.Itoa(n), out, name+"-oci")
		ociPct[strconv.Itoa(n)] = pct
		t.Logf("figure: %d pages/frame: bundle %.1f MiB, working set %.1f MiB, RAM read before ready %.1f MiB (%.1f%% of %d MiB), ready %.3f s",
			n, float64(fileSize(t, out))/(1<<20), float64(ws.Pages())*4096/(1<<20), float64(st.Memory.BytesRead)/(1<<20),
			100*float64(st.Memory.BytesRead)/float64(st.MemBytes), st.MemBytes>>20, st.ReadyS)
	}
	// The 32-page bundle with its working set regrouped into frames of its
	// own (what a working-set layout would fetch).
	hot := filepath.Join(dir, "frames32hot.smolmachine")
	regroupHot(t, filepath.Join(dir, "frames32.smolmachine"), hot)
	ociPct["32hot"] = runOCICold(t, root, dir, reg, "32hot", hot, "c-frames32hot-oci")
	t.Logf("figure: oci:// cold run, fetched / stored: 32 pages/frame %.1f%%, 16 %.1f%%, 8 %.1f%%, 32 with the working set regrouped %.1f%% (goal 15%%) [nested TCG]",
		ociPct["32"], ociPct["16"], ociPct["8"], ociPct["32hot"])
	for n, b := range read {
		if b > memBytes/10 {
			t.Errorf("%d pages per frame: %d bytes of guest RAM read before ready, more than 10%% of %d", n, b, memBytes)
		}
	}
}

// runOCICold pushes bundle as frames:label and runs it from the registry
// with a fresh cache (run and daemon share it); it logs where the fetched
// bytes went and returns the fetched bytes (frames and config in the cache)
// as a percentage of the bundle's size.
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
	o, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", name, "--ready-timeout", "150s",
		"--", "cat", "/tmp/counter")
	if code != 0 {
		t.Fatalf("run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, o, errOut)
	}
	if _, err := strconv.Atoi(lastLine(o)); err != nil {
		t.Fatalf("run oci://%s: counter %q", ref, o)
	}
	fetched, stored := dirBytes(t, cache), fileSize(t, bundle)
	t.Logf("figure: %s pages/frame: oci:// run: %v", label, ociFetchReport(t, bundle, cache, reqLog))
	keepForStudy(t, "frames"+label, bundle, cache, reqLog)
	pct := 100 * float64(fetched) / float64(stored)
	t.Logf("figure: %s pages/frame: oci:// run fetched %.2f MiB of %.2f MiB stored (%.1f%%): %s", label,
		float64(fetched)/(1<<20), float64(stored)/(1<<20), pct, lastLine(errOut))
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

// regroupHot writes src (which has a working set) again as dst with the
// working set's non-zero pages moved into frames of their own, 32 pages
// each in first-touch order; every other page keeps its frame, and frames
// no page refers to any more are dropped. It measures what a working-set
// layout would save a lazy registry start: its frames are exactly the
// pages the guest touches.
func regroupHot(t *testing.T, src, dst string) {
	t.Helper()
	b, err := chunkstore.Open(src, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fr := b.Format()
	man := *fr.Manifest()
	man.Artifacts = slices.Clone(man.Artifacts)
	mi := slices.IndexFunc(man.Artifacts, func(a format.Artifact) bool { return a.Name == "memory" })
	if mi < 0 || len(man.WorkingSet) == 0 {
		t.Fatalf("%s: no memory or no working set", src)
	}
	mem := &man.Artifacts[mi]
	im, err := b.Image("memory")
	if err != nil {
		t.Fatal(err)
	}
	type loc struct{ frame, slot int32 }
	hot := map[int64]loc{} // page -> (hot frame number, slot)
	var hotData [][]byte
	var hotDigests [][]format.Digest
	var data []byte
	var digs []format.Digest
	flush := func() {
		if len(digs) > 0 {
			hotData = append(hotData, format.EncodeFrame(nil, data))
			hotDigests = append(hotDigests, digs)
			data, digs = nil, nil
		}
	}
	page := make([]byte, format.PageSize)
	for _, r := range man.WorkingSet {
		for pg := r.Page; pg < r.Page+r.Count; pg++ {
			if _, ok := mem.Locate(pg); !ok {
				continue
			}
			if _, ok := hot[pg]; ok {
				continue
			}
			if _, err := im.ReadAt(page, pg*format.PageSize); err != nil {
				t.Fatal(err)
			}
			hot[pg] = loc{int32(len(hotData)), int32(len(digs))}
			data = append(data, page...)
			digs = append(digs, format.PageDigest(page))
			if len(digs) == 32 {
				flush()
			}
		}
	}
	flush()
	// Memory's extents page by page: hot pages to their hot frame (numbered
	// after the old frames for now), the rest where they were.
	const hotBase = 1 << 30
	var ext []format.Extent
	add := func(pg int64, f, s int32) {
		if n := len(ext); n > 0 && ext[n-1].End() == pg && ext[n-1].Frame == f && ext[n-1].Slot+ext[n-1].Count == s {
			ext[n-1].Count++
			return
		}
		ext = append(ext, format.Extent{Page: pg, Count: 1, Frame: f, Slot: s})
	}
	for _, e := range mem.Extents {
		for pg := e.Page; pg < e.End(); pg++ {
			if h, ok := hot[pg]; ok {
				add(pg, hotBase+h.frame, h.slot)
			} else {
				add(pg, e.Frame, e.Slot+int32(pg-e.Page))
			}
		}
	}
	mem.Extents = ext
	used := map[int32]bool{}
	for _, a := range man.Artifacts {
		for _, e := range a.Extents {
			used[e.Frame] = true
		}
	}
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp)
	defer out.Close()
	w, err := format.NewWriter(out)
	if err != nil {
		t.Fatal(err)
	}
	renum := map[int32]int32{}
	var buf []byte
	for i, f := range fr.Frames() {
		if !used[int32(i)] {
			continue
		}
		if f.External {
			t.Fatalf("%s: frame %d is external", src, i)
		}
		if buf, err = fr.ReadRaw(i, buf); err != nil {
			t.Fatal(err)
		}
		idx, err := w.AddFrame(slices.Clone(buf), f.PageDigests)
		if err != nil {
			t.Fatal(err)
		}
		renum[int32(i)] = int32(idx)
	}
	for k := range hotData {
		idx, err := w.AddFrame(hotData[k], hotDigests[k])
		if err != nil {
			t.Fatal(err)
		}
		renum[hotBase+int32(k)] = int32(idx)
	}
	for a := range man.Artifacts {
		man.Artifacts[a].Extents = slices.Clone(man.Artifacts[a].Extents)
		for k := range man.Artifacts[a].Extents {
			e := &man.Artifacts[a].Extents[k]
			e.Frame = renum[e.Frame]
		}
	}
	man.TOC = ""
	if _, err := w.Finish(&man); err != nil {
		t.Fatalf("regroup %s: %v", src, err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
