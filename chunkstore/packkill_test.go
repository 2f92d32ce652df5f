package chunkstore

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// packHelper runs in a child: it packs CHUNKSTORE_TEST_IN into a thin
// bundle at CHUNKSTORE_TEST_PATH with store CHUNKSTORE_TEST_STORE, and stalls
// in the progress callback after a few batches (saying "ready") until killed.
func packHelper() {
	s, err := OpenDir(os.Getenv("CHUNKSTORE_TEST_STORE"))
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	var seen int64
	_, err = Pack(context.Background(), os.Getenv("CHUNKSTORE_TEST_PATH"), PackOptions{
		Store: s, FramePages: 4,
		Inputs: []PackInput{{Name: "memory", Path: os.Getenv("CHUNKSTORE_TEST_IN")}},
		Progress: func(n int64) {
			seen += n
			if seen >= 8<<20 {
				os.Stdout.WriteString("ready\n")
				time.Sleep(time.Minute)
			}
		},
	})
	os.Stdout.WriteString("finished " + errString(err) + "\n")
	os.Exit(2)
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// kill -9 in the middle of a thin pack leaves no bundle, and every frame
// visible in the store is whole.
func TestPackKilled(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mem.img")
	if err := sampleimage.WriteFile(in, 16<<20, sampleimage.Mix{Random: 1, Text: 1}, 5); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	store := filepath.Join(dir, "store")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=pack", "CHUNKSTORE_TEST_IN="+in,
		"CHUNKSTORE_TEST_PATH="+filepath.Join(outDir, "b.smolmachine"), "CHUNKSTORE_TEST_STORE="+store)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() { l, _ := bufio.NewReader(stdout).ReadString('\n'); line <- l }()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "ready" {
			t.Fatalf("helper: %q", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("helper did not reach the middle of the pack")
	}
	time.Sleep(100 * time.Millisecond) // let store writers run
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("killed pack left %d entries in the output dir (first %s)", len(ents), ents[0].Name())
	}
	s, _ := OpenDir(store)
	frames, orphans := 0, 0
	filepath.Walk(store, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		name := fi.Name()
		if strings.HasPrefix(name, ".") {
			t.Errorf("temporary file visible in the store: %s", p)
			return nil
		}
		if strings.HasSuffix(name, ".pages") {
			return nil
		}
		d, err := format.ParseDigest(name)
		if err != nil {
			t.Errorf("stray file in the store: %s", p)
			return nil
		}
		pages, err := s.Pages(d)
		if err != nil {
			orphans++ // frame written, sidecar not yet: whole, but not indexed
			return nil
		}
		raw, err := s.Get(ctxT(t), d)
		if err != nil {
			t.Fatal(err)
		}
		info := &format.FrameInfo{Digest: d, PageDigests: pages}
		if _, err := format.DecodeFrame(info, raw, nil); err != nil {
			t.Errorf("frame %s in the store is not whole: %v", d, err)
		}
		frames++
		return nil
	})
	if frames == 0 {
		t.Fatal("the pack was killed before it stored any frame: the test checked nothing")
	}
	if orphans > storeWriters {
		t.Errorf("%d frames without a sidecar; at most %d writers were in flight", orphans, storeWriters)
	}
	t.Logf("after kill: %d whole frames, %d without sidecar, no bundle", frames, orphans)
}
