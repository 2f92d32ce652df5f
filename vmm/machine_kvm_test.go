package vmm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// syncBuffer is a console that tests can read while the guest writes, and
// that signals when a line appears.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	want    string
	seen    chan struct{}
	matched bool
}

func newSyncBuffer(want string) *syncBuffer {
	return &syncBuffer{want: want, seen: make(chan struct{})}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	if !b.matched && b.want != "" && strings.Contains(b.buf.String(), b.want) {
		b.matched = true
		close(b.seen)
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// saveConsole writes a test's whole console to $SMOLVM_CONSOLE_DIR, when
// set, for debugging boots in the lab.
func saveConsole(t *testing.T, out string) {
	if dir := os.Getenv("SMOLVM_CONSOLE_DIR"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, t.Name()+".console"), []byte(out), 0o644)
	}
}

// tail is the end of the console, for failure messages.
func tail(s string) string {
	if len(s) > 3000 {
		return "..." + s[len(s)-3000:]
	}
	return s
}

// runMachine runs m with a deadline and returns Run's error.
func runMachine(t *testing.T, m *Machine, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := m.Run(ctx)
	if ctx.Err() != nil && m.StopReason() == StopCanceled {
		return fmt.Errorf("guest did not stop on its own within %v", timeout)
	}
	return err
}

// TestKVMBootKernelPanicReboots boots the cloud kernel with 2 vCPUs and no
// initramfs: it brings up both CPUs through the ACPI tables, panics for lack
// of a root filesystem and, with panic=-1, reboots, which ends Run with nil.
func TestKVMBootKernelPanicReboots(t *testing.T) {
	kvmtest.Require(t)
	console := newSyncBuffer("")
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0 panic=-1", CPUs: 2, MemBytes: 256 << 20, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	start := time.Now()
	err = runMachine(t, m, 100*time.Second)
	out := console.String()
	saveConsole(t, out)
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, tail(out))
	}
	if m.StopReason() != StopReboot {
		t.Fatalf("stop reason %v, want reboot\nconsole:\n%s", m.StopReason(), tail(out))
	}
	for _, want := range []string{"Brought up 1 node, 2 CPUs", "Kernel panic", "IOAPIC[0]: apic_id 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q\nconsole:\n%s", want, tail(out))
		}
	}
	t.Logf("boot to panic and reboot: %v (%s)", time.Since(start), kvmtest.Label())
}

// TestKVMCancelStopsRunningGuest cancels Run while the guest is busy
// booting: Run must return nil promptly with StopCanceled.
func TestKVMCancelStopsRunningGuest(t *testing.T) {
	kvmtest.Require(t)
	console := newSyncBuffer("Linux version")
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0 panic=-1", CPUs: 2, MemBytes: 256 << 20, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	select {
	case <-console.seen:
	case err := <-done:
		t.Fatalf("Run returned before the kernel printed: %v\n%s", err, tail(console.String()))
	case <-time.After(2 * time.Minute):
		t.Fatalf("no kernel banner within 2 minutes\n%s", tail(console.String()))
	}
	cancel()
	stopStart := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(StopTimeout + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if r := m.StopReason(); r != StopCanceled {
		t.Fatalf("stop reason %v, want canceled", r)
	}
	t.Logf("stopped %v after cancel (%s)", time.Since(stopStart), kvmtest.Label())
	if err := m.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Run: %v, want ErrClosed", err)
	}
}

// TestKVMTripleFaultIsAnError points the boot vCPU at a division by zero
// with an empty IDT: #DE cannot be delivered, nor the #GP that follows, nor
// the double fault: a triple fault. (#DE rather than UD2: KVM intercepts #UD
// to emulate it, which QEMU's nested SVM in the lab does not survive.)
func TestKVMTripleFaultIsAnError(t *testing.T) {
	kvmtest.Require(t)
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0", CPUs: 1, MemBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	const faultAt = 0x3000
	copy(m.mem[0].Bytes()[faultAt:], []byte{0x31, 0xC0, 0xF7, 0xF0}) // xor eax,eax; div eax
	regs, err := m.vcpus[0].Regs()
	if err != nil {
		t.Fatal(err)
	}
	regs.RIP = faultAt
	if err := m.vcpus[0].SetRegs(regs); err != nil {
		t.Fatal(err)
	}
	err = runMachine(t, m, time.Minute)
	var ee *ExitError
	if !errors.Is(err, ErrTripleFault) || !errors.As(err, &ee) {
		t.Fatalf("Run: %v, want an ExitError for a triple fault", err)
	}
	if ee.Reason != kvm.ExitShutdown || ee.VCPU != 0 {
		t.Fatalf("exit %+v, want KVM_EXIT_SHUTDOWN on vCPU 0", ee)
	}
	if m.StopReason() != StopError {
		t.Fatalf("stop reason %v, want error", m.StopReason())
	}
	// The faulting RIP survives a shutdown on Intel; on AMD the vCPU reads
	// as reset, and the error must say so rather than blame 0xfff0.
	switch {
	case ee.RIP == faultAt && ee.Detail != "":
		t.Fatalf("RIP kept (%#x), yet the error says %q", ee.RIP, ee.Detail)
	case ee.RIP == resetRIP && !strings.Contains(ee.Detail, "reads as reset"):
		t.Fatalf("RIP %#x (the reset vector) without saying so: %v", ee.RIP, err)
	case ee.RIP != faultAt && ee.RIP != resetRIP:
		t.Fatalf("RIP %#x: neither the faulting instruction (%#x) nor the reset vector", ee.RIP, faultAt)
	}
	t.Logf("triple fault reported as: %v", err)
}

// TestKVMMemoryAbovePCIHole: more than 3 GiB of RAM is split into a slot
// below the PCI hole and one from 4 GiB (mapped lazily: nothing is booted);
// the VM generation ID page is a slot of its own in the hole.
func TestKVMMemoryAbovePCIHole(t *testing.T) {
	kvmtest.Require(t)
	const mem = 3<<30 + 512<<20
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0", CPUs: 1, MemBytes: mem})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	got := map[uint64]uint64{}
	for _, s := range m.vm.Slots() {
		got[s.GPA] = s.Size
	}
	want := map[uint64]uint64{0: 3 << 30, 4 << 30: 512 << 20, amd64.VMGenIDAddr: 4096}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("memory slots %#v, want %#v", got, want)
	}
}

// TestKVMCloseWhileRunning closes a machine whose guest is still booting,
// without cancelling Run first: Close must stop Run and wait for it before
// freeing vCPUs and memory (it used to free them under running vCPUs).
func TestKVMCloseWhileRunning(t *testing.T) {
	kvmtest.Require(t)
	console := newSyncBuffer("Linux version")
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0 panic=-1", CPUs: 2, MemBytes: 256 << 20, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	select {
	case <-console.seen:
	case err := <-done:
		t.Fatalf("Run returned before the kernel printed: %v\n%s", err, tail(console.String()))
	case <-time.After(2 * time.Minute):
		t.Fatalf("no kernel banner within 2 minutes\n%s", tail(console.String()))
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close while running: %v", err)
	}
	select {
	case <-m.runDone:
	default:
		t.Fatal("Close returned while Run was still running")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run's result never arrived")
	}
	if r := m.StopReason(); r != StopCanceled {
		t.Fatalf("stop reason %v, want canceled", r)
	}
}

// TestKVMDeviceLogReachesConfigLog: the vsock device's diagnostics reach
// Config.Log (a host client with a bad CONNECT line is refused and logged;
// no guest needs to run for that).
func TestKVMDeviceLogReachesConfigLog(t *testing.T) {
	kvmtest.Require(t)
	sock := filepath.Join(t.TempDir(), "v.sock")
	log := newSyncBuffer("vsock: host client on " + sock)
	m, err := New(Config{Kernel: cloudKernel(t), Cmdline: "console=ttyS0", CPUs: 1, MemBytes: 256 << 20, VsockPath: sock, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("HELLO 52\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-log.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("no refusal logged within 10 s; log: %q", log.String())
	}
	if !strings.Contains(log.String(), "smolvm: vsock: ") {
		t.Fatalf("log line lacks its prefix: %q", log.String())
	}
}
