package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/control"
	"github.com/smolvm/smolvm/vmm/guest"
)

// Issue 8's "done when" list: bin/smolvm boot --name with the default
// kernel and initramfs (which carries bin/smolvm-agent) and a 64 MiB ext4
// disk, driven with bin/smolvm exec as a user would. Figures are logged
// with the prefix "figure:" (nested TCG in the lab).

// agentVM is a `smolvm boot --name` child process.
type agentVM struct {
	name, root string
	cmd        *exec.Cmd
	console    syncBuf
	exited     chan struct{}
	waitErr    error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgentVM starts bin with args as VM name under the run dir root
// (SMOLVM_RUN_DIR), its output collected in vm.console, and stops it in
// t.Cleanup (SIGTERM, then kill after 20 s), logging the output's tail under
// "<what> of NAME" when the test failed.
func startAgentVM(t *testing.T, name, root, what, bin string, args ...string) *agentVM {
	t.Helper()
	vm := &agentVM{name: name, root: root, exited: make(chan struct{})}
	vm.cmd = exec.Command(bin, args...)
	vm.cmd.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	vm.cmd.Stdout, vm.cmd.Stderr = &vm.console, &vm.console
	if err := vm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.exited:
		default:
			_ = vm.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-vm.exited:
			case <-time.After(20 * time.Second):
				_ = vm.cmd.Process.Kill()
				<-vm.exited
			}
		}
		if t.Failed() {
			t.Logf("%s of %s:\n%s", what, name, tailLines(vm.console.String()))
		}
	})
	return vm
}

func bootAgentVM(t *testing.T, name string, args ...string) *agentVM {
	t.Helper()
	bin := smolvmBin(t)
	if _, err := os.Stat(filepath.Join(filepath.Dir(bin), guest.AgentName)); err != nil {
		t.Fatalf("bin/smolvm-agent missing (make build builds it): %v", err)
	}
	vm := startAgentVM(t, name, t.TempDir(), "console", bin,
		append([]string{"boot", "--name", name, "--cpus", "2", "--mem", "256M"}, args...)...)
	// exec fails at once for a VM without a state dir: wait for the
	// control socket (boot builds the initramfs first).
	sock := filepath.Join(vm.root, name, control.ControlSocketName)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(sock); err == nil {
			return vm
		}
		select {
		case <-vm.exited:
			t.Fatalf("smolvm boot exited early: %v", vm.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket %s within 2 min", sock)
		}
	}
}

// exec runs `smolvm exec NAME -- args` and returns stdout, stderr, status.
func (vm *agentVM) exec(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, smolvmBin(t), append([]string{"exec", "--wait", "150s", vm.name, "--"}, args...)...)
	c.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+vm.root)
	c.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("exec %v: %v", args, err)
	}
	return out.String(), errOut.String(), c.ProcessState.ExitCode()
}

// mustExec runs args and fails unless it exits 0.
func (vm *agentVM) mustExec(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := vm.exec(t, "", args...)
	if code != 0 {
		t.Fatalf("exec %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// poweroff powers the guest off and checks the VM process exits 0 and
// removes its state dir, after which exec fails clearly.
func (vm *agentVM) poweroff(t *testing.T) {
	t.Helper()
	_, _, _ = vm.exec(t, "", "poweroff", "-f") // the session may die with the guest
	select {
	case <-vm.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("VM process still running 60 s after poweroff -f")
	}
	if vm.waitErr != nil {
		t.Errorf("smolvm boot after poweroff: %v", vm.waitErr)
	}
	if _, err := os.Stat(filepath.Join(vm.root, vm.name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir after poweroff: %v", err)
	}
	_, errOut, code := vm.exec(t, "", "true")
	if code != exitExecFailed || !strings.Contains(errOut, "no such VM") {
		t.Errorf("exec after poweroff: exit %d %q, want %d and \"no such VM\"", code, errOut, exitExecFailed)
	}
}

// ext4Image makes a 64 MiB ext4 image.
func ext4Image(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.ext4")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		if mkfs, err = exec.LookPath("/usr/sbin/mkfs.ext4"); err != nil {
			t.Fatalf("mkfs.ext4 (e2fsprogs) missing: %v", err)
		}
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", "smolvm", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return img
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func token(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "smolvm-token-" + hex.EncodeToString(b)
}

func fileContains(t *testing.T, path, s string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Contains(b, []byte(s))
}

// writeFileScript mounts /dev/vda, writes tok to a file and syncs.
func writeFileScript(tok string) string {
	return "set -e; mkdir -p /mnt/vda; mount -t ext4 /dev/vda /mnt/vda; echo " + tok + " > /mnt/vda/hello.txt; sync; cat /mnt/vda/hello.txt; umount /mnt/vda"
}

func TestKVMExecAgent(t *testing.T) {
	kvmtest.Require(t)
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	img := ext4Image(t)
	vm := bootAgentVM(t, "exec1", "--disk", "vda="+img)

	// The first exec waits for the agent's ready notification.
	start := time.Now()
	if out := vm.mustExec(t, "uname", "-r"); strings.TrimSpace(out) != release {
		t.Errorf("uname -r = %q, want %q", out, release)
	}
	t.Logf("figure: boot to first exec answer %.2f s (nested TCG)", time.Since(start).Seconds())
	st, err := control.NewClient(filepath.Join(vm.root, "exec1", control.ControlSocketName)).Status(context.Background())
	if err != nil || !st.Ready || st.Agent == nil || st.Agent.Kernel != release {
		t.Errorf("status %+v %v: want ready with the agent's kernel %s", st, err, release)
	} else {
		t.Logf("figure: start to agent ready %.2f s (guest uptime %.2f s) (nested TCG)", st.ReadySeconds, st.Agent.GuestUptime)
	}

	if out, errOut, code := vm.exec(t, "", "sh", "-c", "echo out; echo err >&2; exit 7"); code != 7 || out != "out\n" || errOut != "err\n" {
		t.Errorf("sh -c 'exit 7': exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, _, code := vm.exec(t, "abc\n", "tr", "a-z", "A-Z"); code != 0 || out != "ABC\n" {
		t.Errorf("stdin: exit %d stdout %q", code, out)
	}

	// The disk: a file written and synced in the guest is in the image.
	tok := token(t)
	if out := vm.mustExec(t, "sh", "-c", writeFileScript(tok)); strings.TrimSpace(out) != tok {
		t.Errorf("guest read back %q", out)
	}
	if !fileContains(t, img, tok) {
		t.Error("the file written in the guest is not in the image on the host")
	}

	// 20 sequential and 6 concurrent sessions.
	for i := 0; i < 20; i++ {
		want := fmt.Sprintf("seq-%d\n", i)
		if out, _, code := vm.exec(t, "", "echo", strings.TrimSpace(want)); code != 0 || out != want {
			t.Fatalf("sequential exec %d: exit %d %q", i, code, out)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, _, code := vm.exec(t, "", "sh", "-c", fmt.Sprintf("sleep 1; echo con-%d; exit %d", i, 10+i))
			if code != 10+i || out != fmt.Sprintf("con-%d\n", i) {
				t.Errorf("concurrent exec %d: exit %d %q", i, code, out)
			}
		}()
	}
	wg.Wait()

	checkPauseResume(t, vm)
	measureExec(t, vm)
	measureDiskRead(t, vm, img)
	vm.poweroff(t)
}

// checkPauseResume pauses the VM through its control socket: an exec
// cannot finish while the guest is frozen, and does once it resumes.
func checkPauseResume(t *testing.T, vm *agentVM) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := control.NewClient(filepath.Join(vm.root, vm.name, control.ControlSocketName))
	if st, err := c.Pause(ctx); err != nil || st.State != control.StatePaused {
		t.Fatalf("pause: %+v %v", st, err)
	}
	done := make(chan string, 1)
	go func() {
		out, _, _ := vm.exec(t, "", "echo", "after-resume")
		done <- out
	}()
	select {
	case out := <-done:
		t.Fatalf("exec finished while the VM was paused: %q", out)
	case <-time.After(3 * time.Second):
	}
	if st, err := c.Resume(ctx); err != nil || st.State != control.StateRunning {
		t.Fatalf("resume: %+v %v", st, err)
	}
	select {
	case out := <-done:
		if out != "after-resume\n" {
			t.Errorf("exec across pause/resume: %q", out)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("exec did not finish within 90 s of resume")
	}
}

// measureExec logs the exec round trip: median of 50 `true` through the
// CLI (process start included) and through the agent package directly.
func measureExec(t *testing.T, vm *agentVM) {
	var cli, lib []time.Duration
	for i := 0; i < 50; i++ {
		s := time.Now()
		vm.mustExec(t, "true")
		cli = append(cli, time.Since(s))
	}
	sock := filepath.Join(vm.root, vm.name, control.VsockSocketName)
	for i := 0; i < 50; i++ {
		s := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		c, err := agent.DialHybrid(ctx, sock, agent.ExecPort)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		st, err := agent.Run(ctx, c, agent.Command{Args: []string{"true"}})
		cancel()
		if err != nil || st.Code != 0 {
			t.Fatalf("agent.Run true: %+v %v", st, err)
		}
		lib = append(lib, time.Since(s))
	}
	t.Logf("figure: exec round trip of `true`, median of 50: smolvm exec CLI %v, agent package %v (nested TCG)", median(cli), median(lib))
}

// measureDiskRead logs the guest reading all of /dev/vda (caches dropped)
// against the host reading the image file.
func measureDiskRead(t *testing.T, vm *agentVM, img string) {
	var base []time.Duration
	for i := 0; i < 5; i++ {
		s := time.Now()
		vm.mustExec(t, "true")
		base = append(base, time.Since(s))
	}
	var guestT []time.Duration
	for i := 0; i < 3; i++ {
		vm.mustExec(t, "sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches")
		s := time.Now()
		out := vm.mustExec(t, "sh", "-c", "dd if=/dev/vda of=/dev/null bs=1M 2>&1")
		guestT = append(guestT, time.Since(s)-median(base))
		if !strings.Contains(out, "64+0 records in") {
			t.Fatalf("dd in the guest: %q", out)
		}
	}
	var hostT []time.Duration
	buf := make([]byte, 1<<20)
	for i := 0; i < 3; i++ {
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
		s := time.Now()
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		f.Close()
		if err != nil || n != 64<<20 {
			t.Fatalf("host read: %d %v", n, err)
		}
		hostT = append(hostT, time.Since(s))
	}
	g, h := median(guestT), median(hostT)
	mb := float64(64)
	t.Logf("figure: sequential read of the 64 MiB disk: guest dd %.1f MB/s (%v, exec overhead %v subtracted), host read of the image %.1f MB/s (%v); guest/host %.3f (nested TCG)",
		mb/g.Seconds(), g, median(base), mb/h.Seconds(), h, h.Seconds()/g.Seconds())
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestKVMExecCOWDisk: with ,cow the image is never written; the overlay in
// the state dir holds the guest's write.
func TestKVMExecCOWDisk(t *testing.T) {
	kvmtest.Require(t)
	img := ext4Image(t)
	before := fileSHA(t, img)
	vm := bootAgentVM(t, "cow1", "--disk", "vda="+img+",cow")
	tok := token(t)
	if out := vm.mustExec(t, "sh", "-c", writeFileScript(tok)); strings.TrimSpace(out) != tok {
		t.Errorf("guest read back %q", out)
	}
	dir := filepath.Join(vm.root, "cow1")
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && fileContains(t, p, tok) {
			found = append(found, p)
		}
		return nil
	})
	if len(found) == 0 {
		t.Errorf("no file in the state dir %s holds the guest's write", dir)
	} else {
		t.Logf("overlay holding the write: %v", found)
	}
	if after := fileSHA(t, img); after != before {
		t.Errorf("image changed under ,cow: sha256 %s -> %s", before, after)
	}
	// smolvm stop ends the VM; ps no longer lists it.
	stop := exec.Command(smolvmBin(t), "stop", "cow1")
	stop.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+vm.root)
	if out, err := stop.CombinedOutput(); err != nil {
		t.Fatalf("smolvm stop: %v\n%s", err, out)
	}
	select {
	case <-vm.exited:
		if vm.waitErr != nil {
			t.Errorf("smolvm boot after smolvm stop: %v", vm.waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("VM process still running 30 s after smolvm stop returned")
	}
	ps := exec.Command(smolvmBin(t), "ps", "--json")
	ps.Env = stop.Env
	if out, err := ps.Output(); err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("ps after stop: %s %v", out, err)
	}
	if after := fileSHA(t, img); after != before {
		t.Errorf("image changed under ,cow after stop: sha256 %s -> %s", before, after)
	}
}
