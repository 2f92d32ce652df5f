package vsock_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/guest"
)

// probeMachine is a running machine booted with the probe as its agent.
type probeMachine struct {
	m    *vmm.Machine
	out  *console
	done chan error
	stop func()
}

func probeConfig(t *testing.T, path string) vmm.Config {
	t.Helper()
	exe := staticSelf(t)
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := guest.Initramfs(guest.Options{Agent: exe})
	if err != nil {
		t.Fatal(err)
	}
	return vmm.Config{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1 quiet",
		CPUs: 2, MemBytes: 256 << 20, VsockPath: path}
}

// newProbeMachine builds a machine; fill (may be nil) prepares it before
// Run (a restore).
func newProbeMachine(t *testing.T, cfg vmm.Config, fill func(*vmm.Machine)) *probeMachine {
	t.Helper()
	p := &probeMachine{out: &console{}, done: make(chan error, 1)}
	cfg.Console = p.out
	m, err := vmm.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.m = m
	if fill != nil {
		fill(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	go func() { p.done <- m.Run(ctx) }()
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			t.Errorf("machine did not stop")
		}
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(p.stop)
	return p
}

// TestKVMVsockRestore pauses a guest with an open vsock connection, saves
// it, and restores it into a fresh machine on the same socket path: the
// old connection's host end is closed, the guest learns of the reset from
// the TRANSPORT_RESET event (its socket fails with ECONNRESET), and its
// listener takes new connections.
func TestKVMVsockRestore(t *testing.T) {
	kvmtest.Require(t)
	dir, err := os.MkdirTemp("", "vsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "v.sock")
	cfg := probeConfig(t, path)
	src := newProbeMachine(t, cfg, nil)
	src.out.wait(t, fmt.Sprintf("vsockprobe: listening on port %d", probeEchoPort), 3*time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old, err := agent.DialHybrid(ctx, path, probeEchoPort)
	if err != nil {
		t.Fatalf("CONNECT %d: %v\n%s", probeEchoPort, err, src.out.String())
	}
	defer old.Close()
	old.SetDeadline(time.Now().Add(2 * time.Minute))
	old.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(old, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo before the snapshot: %q, %v", buf, err)
	}

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
	src.stop()
	if b, err := io.ReadAll(old); err != nil || len(b) != 0 {
		t.Errorf("old connection's host end after the source closed: %q, %v; want EOF", b, err)
	}

	start := time.Now()
	dst := newProbeMachine(t, cfg, func(m *vmm.Machine) {
		for i, r := range m.RAM() {
			copy(r.Data, ram[i])
		}
		if err := m.RestoreState(st); err != nil {
			t.Fatal(err)
		}
	})
	dst.out.wait(t, "vsockprobe: echo connection ended: connection reset by peer", 2*time.Minute)
	resetSeen := time.Since(start)
	c, err := agent.DialHybrid(ctx, path, probeEchoPort)
	if err != nil {
		t.Fatalf("CONNECT %d after restore: %v\n%s", probeEchoPort, err, dst.out.String())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	msg := fmt.Sprintf("after restore %d", time.Now().UnixNano())
	go func() { c.Write([]byte(msg)); c.(*net.UnixConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo after restore: %q, %v; want %q", got, err, msg)
	}
	if strings.Contains(dst.out.String(), guest.ReadyMarker) {
		t.Fatalf("restored guest booted again:\n%s", dst.out.String())
	}
	t.Logf("[%s] guest saw the transport reset %v after restore began", kvmtest.Label(), resetSeen.Round(time.Millisecond))
}
