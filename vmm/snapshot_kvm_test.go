package vmm

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// waitConsole polls a console until it contains s.
func waitConsole(t *testing.T, c *syncBuffer, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("console lacks %q after %v:\n%s", s, timeout, tail(c.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runningGuest is a machine booted from the default guest with its console
// shell, run in the background.
type runningGuest struct {
	m       *Machine
	console *syncBuffer
	in      *io.PipeWriter
	done    chan error
}

func guestConfig(t testing.TB) Config {
	t.Helper()
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := guest.Initramfs(guest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet", CPUs: 2, MemBytes: 256 << 20}
}

func newGuest(t *testing.T, cfg Config) *runningGuest {
	t.Helper()
	g := &runningGuest{console: newSyncBuffer(""), done: make(chan error, 1)}
	var r *io.PipeReader
	r, g.in = io.Pipe()
	t.Cleanup(func() { g.in.Close() })
	cfg.Console, cfg.ConsoleIn = g.console, r
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	g.m = m
	return g
}

func (g *runningGuest) start(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	go func() { g.done <- g.m.Run(ctx) }()
}

func (g *runningGuest) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.done:
		return err
	case <-time.After(2 * time.Minute):
		t.Fatalf("machine did not stop:\n%s", tail(g.console.String()))
		return nil
	}
}

func (g *runningGuest) typeLine(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(g.in, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

// TestKVMPauseSaveRestoreContinues boots the default guest to its console
// shell, pauses it, saves machine state and RAM, restores both into a fresh
// machine and checks that the shell there runs a new command and powers off.
func TestKVMPauseSaveRestoreContinues(t *testing.T) {
	kvmtest.Require(t)
	cfg := guestConfig(t)
	src := newGuest(t, cfg)
	src.start(t)
	waitConsole(t, src.console, guest.ReadyMarker, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	src.typeLine(t, "echo before-$((20+22))")
	waitConsole(t, src.console, "before-42", time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := src.m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := src.m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	var ram [][]byte
	for _, r := range src.m.RAM() {
		ram = append(ram, append([]byte(nil), r.Data...))
	}
	saved := time.Since(start)
	src.m.Stop()
	if err := src.wait(t); err != nil {
		t.Fatalf("source Run after Stop: %v", err)
	}
	if len(st.VCPUs) != 2 || st.VCPUs[1].MPState == kvm.MPStateUninitialized {
		t.Fatalf("saved %d vCPUs, vCPU 1 mp_state %d (want 2, started)", len(st.VCPUs), st.VCPUs[1].MPState)
	}

	dst := newGuest(t, cfg)
	start = time.Now()
	for i, r := range dst.m.RAM() {
		copy(r.Data, ram[i])
	}
	if err := dst.m.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	dst.start(t)
	restored := time.Since(start)
	dst.typeLine(t, "echo after-$((2+3)) cpus=$(grep -c ^processor /proc/cpuinfo)")
	waitConsole(t, dst.console, "after-5 cpus=2", time.Minute)
	dst.typeLine(t, "poweroff -f")
	if err := dst.wait(t); err != nil {
		t.Fatalf("restored Run: %v\n%s", err, tail(dst.console.String()))
	}
	if r := dst.m.StopReason(); r != StopPowerOff {
		t.Fatalf("restored machine stopped with %v, want poweroff", r)
	}
	if strings.Contains(dst.console.String(), guest.ReadyMarker) {
		t.Fatalf("restored machine booted again instead of resuming:\n%s", tail(dst.console.String()))
	}
	t.Logf("pause+save %v, restore %v (%d MiB RAM copied in memory) [%s]", saved.Round(time.Millisecond),
		restored.Round(time.Millisecond), len(ram[0])>>20, kvmtest.Label())
}

// TestKVMSaveNeedsPause: SaveState refuses a running machine.
func TestKVMSaveNeedsPause(t *testing.T) {
	kvmtest.Require(t)
	g := newGuest(t, guestConfig(t))
	if _, err := g.m.SaveState(); err == nil {
		t.Fatal("SaveState of a machine that never ran succeeded")
	}
}
