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
	t.Logf("figure: oci:// cold run, fetched before ready / stored: 32 pages/frame %.1f%%, 16 %.1f%%, 8 %.1f%%, 32 with the working set regrouped %.1f%% (goal 15%%) [nested TCG]",
		ociPct["32"], ociPct["16"], ociPct["8"], ociPct["32hot"])
	// Issue 10's goal, asserted where the layout allows it: with the working
	// set in frames of its own, a lazy start fetches <= 15% of the stored
	// bytes before ready (lab: 9.9-10.8%, three runs). With frames cut in address order
	// the working set's frames alone are ~24% (docs/REGISTRY.md), so the
	// plain layouts are only reported.
	if ociPct["32hot"] > 15 {
		t.Errorf("working-set layout: %.1f%% of the stored bytes fetched before ready, goal 15%%", ociPct["32hot"])
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
	var st runStatsFile
	if b, err := os.ReadFile(stats); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
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

// regroupHot writes src (which has a working set) again as dst with the
// working set's non-zero memory pages moved into frames of their own, 32
// pages each in first-touch order, written first; a frame that lost pages
// to them is written again with only the slots still referred to (one that
// lost them all is dropped), the others are copied raw. The stored bytes
// stay about the same, and a lazy start fetches frames that hold exactly
// the pages the guest touches: this measures what such a working-set
// layout (snapshot.SetWorkingSet's job) would save a registry start.
func regroupHot(t *testing.T, src, dst string) {
	t.Helper()
	ctx := context.Background()
	b, err := chunkstore.Open(src, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fr := b.Format()
	man := *fr.Manifest()
	man.Artifacts = slices.Clone(man.Artifacts)
	mem := man.Artifact("memory")
	if mem == nil || len(man.WorkingSet) == 0 {
		t.Fatalf("%s: no memory or no working set", src)
	}
	type ref struct{ frame, slot int32 }
	// Working-set pages, first touch first, each once.
	var hotPages []int64
	isHot := map[int64]bool{}
	for _, r := range man.WorkingSet {
		for pg := r.Page; pg < r.Page+r.Count; pg++ {
			if _, ok := mem.Locate(pg); ok && !isHot[pg] {
				isHot[pg] = true
				hotPages = append(hotPages, pg)
			}
		}
	}
	// Slots still referred to by pages that stay.
	keep := map[int32]map[int32]bool{}
	for _, a := range man.Artifacts {
		for _, e := range a.Extents {
			for pg := e.Page; pg < e.End(); pg++ {
				if a.Name == "memory" && isHot[pg] {
					continue
				}
				if keep[e.Frame] == nil {
					keep[e.Frame] = map[int32]bool{}
				}
				keep[e.Frame][e.Slot+int32(pg-e.Page)] = true
			}
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
	moved := map[ref]ref{} // old (frame, slot) -> new
	hot := map[int64]ref{} // hot page -> new (frame, slot)
	var data []byte
	var digs []format.Digest
	var pending []int64
	flush := func() {
		if len(digs) == 0 {
			return
		}
		idx, err := w.AddFrame(format.EncodeFrame(nil, data), digs)
		if err != nil {
			t.Fatal(err)
		}
		for k, pg := range pending {
			hot[pg] = ref{int32(idx), int32(k)}
		}
		data, digs, pending = nil, nil, nil
	}
	im, err := b.Image("memory")
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, format.PageSize)
	for _, pg := range hotPages {
		if _, err := im.ReadAt(page, pg*format.PageSize); err != nil {
			t.Fatal(err)
		}
		data = append(data, page...)
		digs = append(digs, format.PageDigest(page))
		pending = append(pending, pg)
		if len(digs) == 32 {
			flush()
		}
	}
	flush()
	var raw []byte
	for i, f := range fr.Frames() {
		slots := keep[int32(i)]
		switch {
		case len(slots) == 0:
			continue
		case f.External:
			t.Fatalf("%s: frame %d is external", src, i)
		case len(slots) == f.Pages():
			if raw, err = fr.ReadRaw(i, raw); err != nil {
				t.Fatal(err)
			}
			idx, err := w.AddFrame(slices.Clone(raw), f.PageDigests)
			if err != nil {
				t.Fatal(err)
			}
			for s := range slots {
				moved[ref{int32(i), s}] = ref{int32(idx), s}
			}
		default:
			full, err := b.Frame(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			var d []byte
			var dg []format.Digest
			var order []int32
			for s := int32(0); s < int32(f.Pages()); s++ {
				if slots[s] {
					d = append(d, full[int(s)*format.PageSize:int(s+1)*format.PageSize]...)
					dg = append(dg, f.PageDigests[s])
					order = append(order, s)
				}
			}
			idx, err := w.AddFrame(format.EncodeFrame(nil, d), dg)
			if err != nil {
				t.Fatal(err)
			}
			for k, s := range order {
				moved[ref{int32(i), s}] = ref{int32(idx), int32(k)}
			}
		}
	}
	for a := range man.Artifacts {
		art := &man.Artifacts[a]
		var ext []format.Extent
		for _, e := range art.Extents {
			for pg := e.Page; pg < e.End(); pg++ {
				to, ok := hot[pg]
				if art.Name != "memory" || !ok {
					to = moved[ref{e.Frame, e.Slot + int32(pg-e.Page)}]
				}
				if n := len(ext); n > 0 && ext[n-1].End() == pg && ext[n-1].Frame == to.frame && ext[n-1].Slot+ext[n-1].Count == to.slot {
					ext[n-1].Count++
					continue
				}
				ext = append(ext, format.Extent{Page: pg, Count: 1, Frame: to.frame, Slot: to.slot})
			}
		}
		art.Extents = ext
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
