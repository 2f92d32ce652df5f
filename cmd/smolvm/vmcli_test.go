package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/vmm/control"
)

// These tests run the smolvm binary's exec, ps and stop against a fake VM
// in the test process: a real state dir and control socket, and a vsock
// socket that speaks the hybrid CONNECT handshake and serves the real
// agent (running commands on the host). No KVM needed.

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// cliBinary builds cmd/smolvm once per test run.
func cliBinary(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smolvm-cli-test")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "smolvm")
		out, err := exec.Command("go", "build", "-o", cliPath, ".").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// fakeVM is a VM as exec, ps and stop see it.
type fakeVM struct {
	dir     *control.Dir
	srv     *control.Server
	stopped chan struct{}
	once    sync.Once
}

func (f *fakeVM) Pause(context.Context) error { return nil }
func (f *fakeVM) Resume()                     {}
func (f *fakeVM) Stop() {
	// Like smolvm boot: stop serving and remove the state dir.
	f.once.Do(func() { close(f.stopped) })
}

func startFakeVM(t *testing.T, root, name string, ready bool) *fakeVM {
	t.Helper()
	d, err := control.Create(root, name)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVM{dir: d, stopped: make(chan struct{})}
	f.srv = control.NewServer(f, control.Info{CPUs: 1, MemBytes: 64 << 20, Name: name, StateDir: d.Path})
	if ready {
		f.srv.SetReady(control.AgentInfo{Version: agent.Version, Hostname: "fake"}, time.Now())
	}
	cln, err := control.Listen(d.ControlSocket())
	if err != nil {
		t.Fatal(err)
	}
	vln, err := net.Listen("unix", d.VsockSocket())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = f.srv.Serve(ctx, cln) }()
	go func() { defer wg.Done(); serveHybrid(ctx, vln) }()
	go func() {
		defer wg.Done()
		select {
		case <-f.stopped:
			cancel()
			d.Remove()
		case <-ctx.Done():
		}
	}()
	t.Cleanup(func() {
		cancel()
		vln.Close()
		wg.Wait()
		d.Remove()
	})
	return f
}

// serveHybrid answers "CONNECT 52" with the agent's exec server.
func serveHybrid(ctx context.Context, ln net.Listener) {
	srv := &agent.Server{Logf: func(string, ...any) {}}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := make([]byte, 0, 16)
			b := make([]byte, 1)
			for len(line) < 32 {
				if _, err := c.Read(b); err != nil || b[0] == '\n' {
					break
				}
				line = append(line, b[0])
			}
			if string(line) != fmt.Sprintf("CONNECT %d", agent.ExecPort) {
				c.Close()
				return
			}
			_, _ = io.WriteString(c, "OK 1234\n")
			_ = srv.ServeConn(ctx, c)
		}()
	}
}

type cliResult struct {
	stdout, stderr string
	code           int
}

func runBin(t *testing.T, root, stdin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBinary(t), args...)
	cmd.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cliResult{out.String(), errOut.String(), cmd.ProcessState.ExitCode()}
}

func TestExecCLI(t *testing.T) {
	root := t.TempDir()
	startFakeVM(t, root, "vm1", true)
	startFakeVM(t, root, "notready", false)
	wd := t.TempDir()
	for _, c := range []struct {
		name           string
		stdin          string
		args           []string
		stdout, stderr string // stderr: substring
		code           int
	}{
		{"streams and status", "", []string{"exec", "vm1", "--", "sh", "-c", "echo out; echo err >&2; exit 7"}, "out\n", "err", 7},
		{"stdin", "hello\n", []string{"exec", "vm1", "--", "tr", "a-z", "A-Z"}, "HELLO\n", "", 0},
		{"no stdin", "hello\n", []string{"exec", "-n", "vm1", "--", "cat"}, "", "", 0},
		{"env and workdir", "", []string{"exec", "-e", "A=1", "--env", "B=two", "-w", wd, "vm1", "--", "sh", "-c", "echo $A $B $(pwd)"}, "1 two " + wd + "\n", "", 0},
		{"signaled", "", []string{"exec", "vm1", "--", "sh", "-c", "kill -KILL $$"}, "", "", 137},
		{"command not found", "", []string{"exec", "vm1", "--", "no-such-command-xyz"}, "", "no-such-command-xyz", 127},
		{"no such VM", "", []string{"exec", "ghost", "--", "true"}, "", `no such VM named "ghost"`, 125},
		{"agent not ready", "", []string{"exec", "--wait", "200ms", "notready", "--", "true"}, "", "did not report ready within 200ms", 125},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runBin(t, root, c.stdin, c.args...)
			if r.code != c.code || r.stdout != c.stdout || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d %q stderr containing %q", r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
}

func TestPSAndStopCLI(t *testing.T) {
	root := t.TempDir()
	startFakeVM(t, root, "alpha", true)
	startFakeVM(t, root, "beta", false)
	// A VM that died without cleaning up: ps must remove it.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(root, "gamma")
	os.Mkdir(stale, 0o700)
	os.WriteFile(filepath.Join(stale, control.PIDFileName), []byte(fmt.Sprintf("%d 1\n", dead.Process.Pid)), 0o600)

	r := runBin(t, root, "", "ps", "--json")
	var ents []psEntry
	if err := json.Unmarshal([]byte(r.stdout), &ents); err != nil || r.code != 0 {
		t.Fatalf("ps --json: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	var got []string
	for _, e := range ents {
		got = append(got, fmt.Sprintf("%s:%s:%v", e.Name, e.State, e.Status != nil && e.Status.Ready))
	}
	if strings.Join(got, " ") != "alpha:running:true beta:running:false" {
		t.Errorf("ps: %v", got)
	}
	if !strings.Contains(r.stderr, "removed the state dir of gamma") {
		t.Errorf("ps stderr %q does not report the stale dir", r.stderr)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale dir still there: %v", err)
	}
	if r := runBin(t, root, "", "ps"); r.code != 0 || !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "alpha") {
		t.Errorf("ps table: %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if r := runBin(t, root, "", "stop", "alpha"); r.code != 0 {
		t.Fatalf("stop: %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "alpha")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("alpha's state dir after stop: %v", err)
	}
	if r := runBin(t, root, "", "exec", "alpha", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "no such VM") {
		t.Errorf("exec after stop: %d %q", r.code, r.stderr)
	}
	if r := runBin(t, root, "", "stop", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "nobody") {
		t.Errorf("stop nobody: %d %q", r.code, r.stderr)
	}
}

// TestExecCLIForwardsSignals: SIGTERM to `smolvm exec` reaches the command
// in the guest (its trap runs) and exec exits with the command's status.
func TestExecCLIForwardsSignals(t *testing.T) {
	root := t.TempDir()
	startFakeVM(t, root, "vm1", true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBinary(t), "exec", "-n", "vm1", "--", "sh", "-c",
		`trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done`)
	cmd.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(out, buf, len("ready\n"))
	if err != nil || string(buf[:n]) != "ready\n" {
		t.Fatalf("before the signal: %q %v", buf[:n], err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(out)
	err = cmd.Wait()
	if string(rest) != "got TERM\n" || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("after SIGTERM: output %q, exit %d (%v); want \"got TERM\" and 3", rest, cmd.ProcessState.ExitCode(), err)
	}
}

// TestBootNameCLI: boot --name refuses a name in use before anything
// starts, and a boot that fails leaves no state dir behind. No KVM needed:
// both fail before the VM exists.
func TestBootNameCLI(t *testing.T) {
	root := t.TempDir()
	startFakeVM(t, root, "taken", true)
	notKernel := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notKernel, []byte(strings.Repeat("not a kernel\n", 100)), 0o644)
	for _, c := range []struct {
		name, vm, mention string
	}{
		{"name in use", "taken", `"taken" is live`},
		{"bad name", "../x", "invalid VM name"},
		{"failed boot cleans up", "fresh", "not a bzImage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := runBin(t, root, "", "boot", "--name", c.vm, "--kernel", notKernel, "--initrd", "", "--net", "none")
			if r.code == 0 || !strings.Contains(r.stderr, c.mention) {
				t.Errorf("exit %d, stderr %q; want failure mentioning %q", r.code, r.stderr, c.mention)
			}
		})
	}
	ents, err := control.List(root)
	if err != nil || len(ents) != 1 || ents[0].Name != "taken" {
		t.Errorf("state dirs after failed boots: %+v %v; want only \"taken\"", ents, err)
	}
}
