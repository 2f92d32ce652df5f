package vmm

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// waitConsole polls the guest's console until it contains s; past the
// timeout it fails with the console's tail and each vCPU's state.
func (g *runningGuest) waitConsole(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(g.console.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("console lacks %q after %v:\n%s\n%s", s, timeout, tail(g.console.String()), g.vcpuDump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vcpuDump pauses the guest (bounded) and describes each vCPU: where it
// is and what its timer holds, so that a guest found hung says whether it
// halts waiting for an interrupt that never comes or spins somewhere.
func (g *runningGuest) vcpuDump() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.m.Pause(ctx); err != nil {
		return fmt.Sprintf("vCPU state: pause failed: %v", err)
	}
	defer g.m.Resume()
	st, err := g.m.SaveState()
	if err != nil {
		return fmt.Sprintf("vCPU state: %v", err)
	}
	var b strings.Builder
	for _, v := range st.VCPUs {
		msr := map[uint32]uint64{}
		for _, e := range v.MSRs {
			msr[e.Index] = e.Data
		}
		reg := func(off int) uint32 { return binary.LittleEndian.Uint32(v.LAPIC.Regs[off:]) }
		fmt.Fprintf(&b, "vCPU %d: mp_state %d RIP %#x RFLAGS %#x (IF %v); LAPIC LVTT %#x TMICT %#x TMCCT %#x; TSC %#x TSC_DEADLINE %#x\n",
			v.ID, v.MPState, v.Regs.RIP, v.Regs.RFLAGS, v.Regs.RFLAGS&(1<<9) != 0, reg(0x320), reg(0x380), reg(0x390), msr[0x10], msr[0x6e0])
	}
	return b.String()
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
	src.waitConsole(t, guest.ReadyMarker, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	src.typeLine(t, "echo before-$((20+22))")
	src.waitConsole(t, "before-42", time.Minute)

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
	// The guest's timers live in MSRs: an armed TSC deadline lost, or set
	// before the TSC it counts in, is a guest that never wakes from its
	// next sleep (the restored guest sleeps below).
	const msrTSC, msrTSCDeadline, msrKVMSystemTime = 0x10, 0x6e0, 0x4b564d01
	for _, v := range st.VCPUs {
		pos := map[uint32]int{}
		for i, e := range v.MSRs {
			pos[e.Index] = i
		}
		for _, idx := range []uint32{msrTSC, msrTSCDeadline, msrKVMSystemTime} {
			if _, ok := pos[idx]; !ok {
				t.Fatalf("vCPU %d: saved state lacks MSR %#x (%d MSRs saved)", v.ID, idx, len(v.MSRs))
			}
		}
		if pos[msrTSC] > pos[msrTSCDeadline] {
			t.Fatalf("vCPU %d: TSC deadline (MSR %#x) would be restored before the TSC", v.ID, msrTSCDeadline)
		}
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
	dst.typeLine(t, "sleep 1; echo after-$((2+3)) cpus=$(grep -c ^processor /proc/cpuinfo)")
	dst.waitConsole(t, "after-5 cpus=2", time.Minute)
	// The hang report works on a running guest (and leaves it running).
	if d := dst.vcpuDump(); !strings.Contains(d, "vCPU 1: mp_state") || !strings.Contains(d, "TSC_DEADLINE") {
		t.Fatalf("vCPU dump:\n%s", d)
	} else {
		t.Logf("vCPU dump of the restored guest:\n%s", d)
	}
	dst.typeLine(t, "echo still-$((1+1))")
	dst.waitConsole(t, "still-2", time.Minute)
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
