package main

import (
	"context"
	"encoding/json"
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
// records each one's working set (page by page) and restores it (uffd,
// working set copied in before the vCPUs run): guest RAM read before ready
// stays within 10% of RAM whatever the frame size; then the same bundle
// runs from a registry with a cold cache, where smaller frames fetch fewer
// bytes for the same pages. Figures are logged for docs/SNAPSHOT.md.
func checkFramePages(t *testing.T, root, dir, bundle, blobSHA string) {
	read := map[int]int64{}
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
		// The same bundle from the registry, cold cache: bytes fetched.
		ref := reg.Host + "/smolvm/frames:" + strconv.Itoa(n)
		if o, errOut, code := smolvmIn(t, root, 5*time.Minute, "push", "--insecure", out, ref); code != 0 {
			t.Fatalf("push: exit %d\n%s\n%s", code, o, errOut)
		}
		cache := filepath.Join(dir, "frames-cache"+strconv.Itoa(n))
		t.Setenv("XDG_CACHE_HOME", cache)
		reqLog := filepath.Join(dir, "frames-requests"+strconv.Itoa(n)+".jsonl")
		t.Setenv(registry.LogEnv, reqLog) // run and its daemon log every range request
		o, errOut, code = smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", name+"-oci", "--ready-timeout", "150s",
			"--", "cat", "/tmp/counter")
		if code != 0 {
			t.Fatalf("run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, o, errOut)
		}
		fetched := dirBytes(t, cache)
		t.Logf("figure: %d pages/frame: oci:// run: %v", n, ociFetchReport(t, out, cache, reqLog))
		keepForStudy(t, "frames"+strconv.Itoa(n), out, cache, reqLog)
		t.Logf("figure: %d pages/frame: oci:// run fetched %.1f MiB of %.1f MiB stored (%.1f%%): %s", n,
			float64(fetched)/(1<<20), float64(fileSize(t, out))/(1<<20), 100*float64(fetched)/float64(fileSize(t, out)), lastLine(errOut))
		t.Logf("figure: %d pages/frame: bundle %.1f MiB, working set %.1f MiB, RAM read before ready %.1f MiB (%.1f%% of %d MiB), ready %.3f s",
			n, float64(fileSize(t, out))/(1<<20), float64(ws.Pages())*4096/(1<<20), float64(st.Memory.BytesRead)/(1<<20),
			100*float64(st.Memory.BytesRead)/float64(st.MemBytes), st.MemBytes>>20, st.ReadyS)
	}
	for n, b := range read {
		if b > memBytes/10 {
			t.Errorf("%d pages per frame: %d bytes of guest RAM read before ready, more than 10%% of %d", n, b, memBytes)
		}
	}
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
