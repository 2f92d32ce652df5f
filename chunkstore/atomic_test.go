package chunkstore

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// atomicHelper runs in a child: it starts an AtomicFile at the path in
// CHUNKSTORE_TEST_PATH, writes to it, says "ready" and waits to be killed.
func atomicHelper() {
	f, err := CreateAtomic(os.Getenv("CHUNKSTORE_TEST_PATH"))
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	f.Write(make([]byte, 1<<20))
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(2)
}

// A writer killed by SIGKILL before Commit leaves nothing in the directory.
func TestAtomicFileKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=atomic", "CHUNKSTORE_TEST_PATH="+filepath.Join(dir, "out.smolmachine"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() { l, _ := bufio.NewReader(out).ReadString('\n'); line <- l }()
	select {
	case l := <-line:
		if strings.TrimSpace(l) != "ready" {
			t.Fatalf("helper: %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not start")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("killed writer left %s", e.Name())
	}
}

func TestAtomicFileCommitAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := CreateAtomic(p)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("visible before Commit: %q", b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // no-op after Commit
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("after Commit: %q", b)
	}
	g, err := CreateAtomic(p)
	if err != nil {
		t.Fatal(err)
	}
	g.WriteString("discarded")
	g.Abort()
	ents, _ := os.ReadDir(dir)
	if b, _ := os.ReadFile(p); string(b) != "new" || len(ents) != 1 {
		t.Fatalf("after Abort: %q, %d entries", b, len(ents))
	}
}
