package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/guest"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// Lab test for issue 9's save side, in process: boot the default guest to
// its console shell, start a counter, Take a snapshot while it runs, restore
// the bundle (memory read through chunkstore, state decoded and checked
// against this host) into a fresh machine, check the counter goes on, and
// snapshot the clone against its parent: only what changed is new.

type consoleBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (c *consoleBuf) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.Write(p)
}

func (c *consoleBuf) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.b.String()
}

// labVM is a machine running in the background with a console shell.
type labVM struct {
	m       *vmm.Machine
	console *consoleBuf
	in      *io.PipeWriter
	done    chan error
}

func newLabVM(t *testing.T, cfg vmm.Config) *labVM {
	t.Helper()
	g := &labVM{console: &consoleBuf{}, done: make(chan error, 1)}
	r, w := io.Pipe()
	g.in = w
	t.Cleanup(func() { w.Close() })
	cfg.Console, cfg.ConsoleIn = g.console, r
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	g.m = m
	return g
}

func (g *labVM) run(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(func() {
		g.m.Stop()
		select {
		case <-g.done:
		case <-time.After(time.Minute):
			t.Error("machine did not stop")
		}
		cancel()
	})
	go func() { g.done <- g.m.Run(ctx) }()
}

// waitFor polls the console until re matches after offset from; it
// returns the submatches.
func (g *labVM) waitFor(t *testing.T, from int, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := g.console.String()
		if from > len(s) {
			from = len(s)
		}
		if m := re.FindStringSubmatch(s[from:]); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("console lacks %v after %v:\n%s", re, timeout, lastLines(s, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// counter asks the shell for the counter's value twice, 1 s apart.
func (g *labVM) counter(t *testing.T, tag string) (a, b int) {
	t.Helper()
	from := len(g.console.String())
	if _, err := fmt.Fprintf(g.in, "a=$(cat /tmp/c); sleep 1; echo CNT-%s $a $(cat /tmp/c)\n", tag); err != nil {
		t.Fatal(err)
	}
	m := g.waitFor(t, from, regexp.MustCompile(`CNT-`+tag+` (\d+) (\d+)\r?\n`), 2*time.Minute)
	a, _ = strconv.Atoi(m[1])
	b, _ = strconv.Atoi(m[2])
	return a, b
}

func labConfig(t *testing.T) vmm.Config {
	t.Helper()
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := guest.Initramfs(guest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return vmm.Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet", CPUs: 2, MemBytes: 256 << 20}
}

// restore builds a fresh machine from a bundle: RAM filled from the memory
// artifact (eagerly, verified), state decoded, checked against this host
// and loaded.
func restore(t *testing.T, path string) (*labVM, *Saved) {
	t.Helper()
	b, err := chunkstore.Open(path, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := b.Image(format.ArtifactState)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := DecodeState(io.NewSectionReader(st, 0, st.Size()))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	host, err := sys.SupportedCPUID()
	sys.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckHost(saved, host); err != nil {
		t.Fatal(err)
	}
	cfg := labConfig(t)
	g := newLabVM(t, cfg)
	mem, err := b.Image(format.ArtifactMemory)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range g.m.RAM() {
		l := saved.Memory[i]
		if l.GPA != r.GPA || l.Size != uint64(len(r.Data)) {
			t.Fatalf("memory region %d: saved %+v, machine %#x+%#x", i, l, r.GPA, len(r.Data))
		}
		if _, err := mem.ReadAt(r.Data, int64(l.Offset)); err != nil && err != io.EOF {
			t.Fatal(err)
		}
	}
	if err := g.m.RestoreState(&saved.Machine); err != nil {
		t.Fatal(err)
	}
	return g, saved
}

func TestKVMSnapshotRestoreClone(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	src := newLabVM(t, labConfig(t))
	src.run(t)
	src.waitFor(t, 0, regexp.MustCompile(regexp.QuoteMeta(guest.ReadyMarker)), 3*time.Minute)
	time.Sleep(500 * time.Millisecond)
	fmt.Fprintln(src.in, "echo 0 > /tmp/c; (i=0; while :; do i=$((i+1)); echo $i > /tmp/c.n; mv /tmp/c.n /tmp/c; sleep 0.05; done) &")
	a0, b0 := src.counter(t, "src")
	if b0 <= a0 {
		t.Fatalf("counter does not count before the snapshot: %d then %d", a0, b0)
	}

	first := filepath.Join(dir, "first.smolmachine")
	res, err := Take(context.Background(), src.m, Options{Output: first, NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.m.Paused() {
		t.Fatal("source still paused after the snapshot")
	}
	a1, b1 := src.counter(t, "after")
	if a1 < b0 || b1 <= a1 {
		t.Fatalf("source counter after the snapshot: %d then %d (was %d)", a1, b1, b0)
	}
	b, err := chunkstore.Open(first, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(context.Background(), nil); err != nil {
		t.Fatalf("snapshot does not verify: %v", err)
	}
	b.Close()
	src.m.Stop()

	clone, saved := restore(t, first)
	if saved.Config.CPUs != 2 || saved.CPU.Vendor == "" {
		t.Fatalf("saved config %+v cpu %+v", saved.Config, saved.CPU)
	}
	start := time.Now()
	clone.run(t)
	a2, b2 := clone.counter(t, "clone")
	if a2 < b0 || b2 <= a2 {
		t.Fatalf("clone counter: %d then %d (source had reached %d before the snapshot)", a2, b2, b0)
	}
	if strings.Contains(clone.console.String(), guest.ReadyMarker) {
		t.Fatal("the clone booted again instead of resuming")
	}
	toCounter := time.Since(start)

	second := filepath.Join(dir, "second.smolmachine")
	res2, err := Take(context.Background(), clone.m, Options{Output: second, Parent: first, NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := res.Pack, res2.Pack
	if p2.NewPages*4 > p2.DataPages || p2.ReusedPages == 0 {
		t.Fatalf("snapshot of the clone stored %d new of %d data pages (reused %d): want only what changed", p2.NewPages, p2.DataPages, p2.ReusedPages)
	}
	t.Logf("figure: snapshot of a running 256 MiB guest: %d data pages, bundle %.1f MiB, paused %.2f s, total %.2f s [%s]",
		p1.DataPages, float64(p1.FileBytes)/(1<<20), res.PausedSeconds, res.Seconds, kvmtest.Label())
	t.Logf("figure: snapshot of its clone vs parent: %d of %d data pages new (%.1f%%), %.1f MiB new, paused %.2f s; clone resumed to counter answer %v",
		p2.NewPages, p2.DataPages, 100*float64(p2.NewPages)/float64(p2.DataPages), float64(p2.NewBytes)/(1<<20), res2.PausedSeconds, toCounter.Round(time.Millisecond))
}
