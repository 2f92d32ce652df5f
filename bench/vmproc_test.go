package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/control"
)

// fakeSmolvmEnv makes the test binary act as `smolvm boot --name NAME`:
// a state dir and control socket, ready after a delay, exit on stop. Its
// value is the mode: "ready" or "die" (exit 3 before ready).
const fakeSmolvmEnv = "BENCH_FAKE_SMOLVM"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeSmolvmEnv); mode != "" {
		os.Exit(fakeSmolvm(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

type fakeMachine struct{ stop chan struct{} }

func (f fakeMachine) Pause(context.Context) error { return nil }
func (f fakeMachine) Resume()                     {}
func (f fakeMachine) Stop()                       { close(f.stop) }

func fakeSmolvm(mode string, args []string) int {
	name := ""
	for i, a := range args {
		if a == "--name" && i+1 < len(args) {
			name = args[i+1]
		}
	}
	fmt.Println("fake smolvm", strings.Join(args, " "))
	if mode == "die" {
		fmt.Fprintln(os.Stderr, "fake smolvm: guest exploded")
		return 3
	}
	dir, err := control.Create(control.DefaultRoot(), name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer dir.Remove()
	fm := fakeMachine{stop: make(chan struct{})}
	srv := control.NewServer(fm, control.Info{Name: name})
	ln, err := control.Listen(dir.ControlSocket())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, ln)
	time.Sleep(300 * time.Millisecond)
	srv.SetReady(control.AgentInfo{Version: 1}, time.Now())
	select {
	case <-fm.stop:
		return 0
	case <-time.After(time.Minute):
		return 4
	}
}

func fakeGuest(t *testing.T) *Guest {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Guest{Smolvm: exe, RunDir: run, Work: t.TempDir(), ReadyTimeout: 20 * time.Second,
		Kernel: "/k", Initrd: "/i", Cmdline: "quiet", CPUs: 1, MemBytes: 256 << 20}
}

func TestStartSmolvm(t *testing.T) {
	g := fakeGuest(t)
	t.Setenv(fakeSmolvmEnv, "ready")
	start := time.Now()
	in, err := smolvmBoot().start(context.Background(), g, nil, "0")
	if err != nil {
		t.Fatal(err)
	}
	if in.Ready < 300*time.Millisecond || in.Ready > time.Since(start) {
		t.Errorf("ready after %v: want at least the fake's 300 ms and at most %v", in.Ready, time.Since(start))
	}
	if len(in.PIDs) != 1 {
		t.Fatalf("pids %v", in.PIDs)
	}
	if _, err := ProcessMemory(in.PIDs[0]); err != nil {
		t.Errorf("VMM memory: %v", err)
	}
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(in.PIDs[0], 0); err == nil {
		t.Errorf("pid %d still running after Stop", in.PIDs[0])
	}
	if !strings.Contains(in.Output(), "fake smolvm boot --name bench-boot-") || !strings.Contains(in.Output(), "--net none") {
		t.Errorf("the VMM's output / args: %q", in.Output())
	}
	ents, _ := os.ReadDir(g.RunDir)
	for _, e := range ents {
		if e.Name() != ".lock" && !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("state dir %s left behind", e.Name())
		}
	}
}

func TestStartSmolvmDies(t *testing.T) {
	g := fakeGuest(t)
	t.Setenv(fakeSmolvmEnv, "die")
	_, err := smolvmBoot().start(context.Background(), g, nil, "0")
	if err == nil || !strings.Contains(err.Error(), "exited before the guest was ready") || !strings.Contains(err.Error(), "guest exploded") {
		t.Fatalf("err = %v: want the exit and the VMM's output", err)
	}
}

func TestReadRunStats(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.json")
	go func() {
		time.Sleep(100 * time.Millisecond)
		os.WriteFile(p+".tmp", []byte(`{"memory":{"paging":"uffd","bytes_read":4096,"pager":{"faults":3},"prefetch_use":{"pages":10,"used":7,"wasted":2,"zero":1}}}`), 0o644)
		os.Rename(p+".tmp", p)
	}()
	read, faults, pf, phases, err := readRunStats(context.Background(), p)
	if err != nil || read != 4096 || faults != 3 || pf == nil || *pf != (PrefetchUse{Used: 7, Wasted: 2}) {
		t.Fatalf("uffd stats: %d %d %+v %v", read, faults, pf, err)
	}
	if len(phases) != 0 {
		t.Fatalf("phases %v from a file without a timeline", phases)
	}
	os.WriteFile(p, []byte(`{"timeline":{"start":"2026-11-24T20:00:00Z","ready_ns":2000000000,"opened_ns":1000000,"memory_ns":500000000,"resumed_ns":0},"memory":{"bytes_read":1}}`), 0o644)
	if _, _, _, phases, err = readRunStats(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(phases) != "[{opened 0.001} {memory 0.5} {ready 2}]" {
		t.Fatalf("phases %v", phases)
	}
	// Seconds, as run writes them now.
	os.WriteFile(p, []byte(`{"timeline":{"connected_s":0.9,"daemon_s":0,"opened_s":0.001,"ready_s":1.5},"memory":{"bytes_read":1}}`), 0o644)
	if _, _, _, phases, err = readRunStats(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(phases) != "[{opened 0.001} {connected 0.9} {ready 1.5}]" {
		t.Fatalf("phases %v", phases)
	}
	os.WriteFile(p, []byte(`{"memory":{"paging":"mmap","bytes_read":8192}}`), 0o644)
	if read, faults, pf, _, err = readRunStats(context.Background(), p); err != nil || read != 8192 || faults != Unknown || pf != nil {
		t.Fatalf("mmap stats: %d %d %+v %v", read, faults, pf, err)
	}
	os.WriteFile(p, []byte(`{`), 0o644)
	if _, _, _, _, err = readRunStats(context.Background(), p); err == nil {
		t.Fatal("bad JSON accepted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, _, _, _, err = readRunStats(ctx, filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "no --stats file") {
		t.Fatalf("missing file: %v", err)
	}
}
