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
	"github.com/smolvm/smolvm/snapshot"
)

// checkFramePages repacks the snapshot with 8, 16 and 32 pages per frame,
// records each one's working set and restores it (uffd, prefetch): guest
// RAM read before ready falls with the frame size (a fault or a recorded
// frame brings in the whole frame), at some cost in bundle size. Figures
// are logged for docs/SNAPSHOT.md.
func checkFramePages(t *testing.T, root, dir, bundle, blobSHA string) {
	read := map[int]int64{}
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
		read[n] = st.Memory.BytesRead
		t.Logf("figure: %d pages/frame: bundle %.1f MiB, working set %.1f MiB, RAM read before ready %.1f MiB (%.1f%% of %d MiB), ready %.3f s",
			n, float64(fileSize(t, out))/(1<<20), float64(ws.Pages())*4096/(1<<20), float64(st.Memory.BytesRead)/(1<<20),
			100*float64(st.Memory.BytesRead)/float64(st.MemBytes), st.MemBytes>>20, st.ReadyS)
	}
	if read[8] > read[32] {
		t.Fatalf("8-page frames read %d bytes before ready, more than 32-page frames (%d)", read[8], read[32])
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
