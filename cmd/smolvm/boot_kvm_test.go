package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
	"github.com/smolvm/smolvm/vmm/network"
)

// These tests run bin/smolvm (built by `make build`, which `make test-kvm`
// runs first) as a child process, the way a user does.

// useBinHelpers points what the test binary itself restores in process
// (snapshot.RecordWorkingSet, say) at the smolmount and smolvm-net beside
// bin/smolvm: a test binary has neither beside it, and the smolvm processes
// the test starts inherit the same.
func useBinHelpers(t *testing.T) {
	t.Helper()
	dir := filepath.Dir(smolvmBin(t))
	t.Setenv("SMOLVM_SMOLMOUNT", filepath.Join(dir, "smolmount"))
	t.Setenv(network.HelperEnv, filepath.Join(dir, network.HelperName))
}

func smolvmBin(t testing.TB) string {
	t.Helper()
	rel := "../../bin/smolvm"
	if b := os.Getenv("SMOLVM_BIN"); b != "" {
		rel = b // another build (with smolvm-agent and smolmount beside it), e.g. while bin/ is in use
	}
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing: run make build (make test-kvm does): %v", p, err)
	}
	return p
}

// consoleRun is a child VM process whose console is read line by line.
type consoleRun struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // console lines; closed at EOF
	start time.Time
	all   strings.Builder
}

func startConsole(t testing.TB, ctx context.Context, name string, args ...string) *consoleRun {
	t.Helper()
	r := &consoleRun{cmd: exec.CommandContext(ctx, name, args...), lines: make(chan string, 1024)}
	r.cmd.WaitDelay = 5 * time.Second
	r.cmd.Cancel = func() error { return r.cmd.Process.Signal(syscall.SIGTERM) }
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stderr = r.cmd.Stdout
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return r
}

// waitFor reads console lines until one contains marker and returns the
// time since start.
func (r *consoleRun) waitFor(t testing.TB, marker string, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				t.Fatalf("console ended before %q:\n%s", marker, tailLines(r.all.String()))
			}
			r.all.WriteString(l + "\n")
			if strings.Contains(l, marker) {
				return time.Since(r.start)
			}
		case <-deadline:
			t.Fatalf("no %q within %v:\n%s", marker, timeout, tailLines(r.all.String()))
		}
	}
}

// finish drains the console and waits for the process; it returns the exit
// status.
func (r *consoleRun) finish(t testing.TB, timeout time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for l := range r.lines {
			r.all.WriteString(l + "\n")
		}
		done <- r.cmd.Wait()
	}()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("process did not exit within %v:\n%s", timeout, tailLines(r.all.String()))
		return -1
	}
}

// kernelWarnings returns the console lines of kernel WARN splats and of the
// x86 FPU's "XSAVE consistency problem" check (a WARN that falls back to
// FXSAVE: seen under QEMU 7.2, whose emulated SVM let the guest's XSETBV
// bypass KVM, so KVM's CPUID.(0xD,0).EBX kept the size for XCR0=1).
func kernelWarnings(console string) []string {
	var w []string
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "WARNING: CPU:") || strings.Contains(l, "XSAVE consistency problem") {
			w = append(w, l)
		}
	}
	return w
}

func tailLines(s string) string {
	ls := strings.Split(s, "\n")
	if len(ls) > 60 {
		ls = append([]string{"..."}, ls[len(ls)-60:]...)
	}
	return strings.Join(ls, "\n")
}

// TestKVMBootCLIRunsInitAndPowersOff: the acceptance run of issue 5. The
// cloud kernel with 2 vCPUs reaches /init, runs the smolvm.cmd script, and
// /init's poweroff -f ends the process with status 0.
func TestKVMBootCLIRunsInitAndPowersOff(t *testing.T) {
	kvmtest.Require(t)
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script := `echo "cpus=$(grep -c ^processor /proc/cpuinfo) answer=$((6*7))"`
	r := startConsole(t, ctx, smolvmBin(t), "boot", "--kernel", kernel, "--cpus", "2", "--mem", "256M",
		"--cmdline", "console=ttyS0 panic=-1 "+guest.CmdParam(script))
	r.waitFor(t, "Brought up 1 node, 2 CPUs", 2*time.Minute)
	ready := r.waitFor(t, guest.ReadyMarker, 2*time.Minute)
	r.waitFor(t, "cpus=2 answer=42", time.Minute)
	r.waitFor(t, guest.ExitMarkerPrefix+"0", time.Minute)
	if code := r.finish(t, time.Minute); code != 0 {
		t.Fatalf("smolvm boot exited %d after poweroff:\n%s", code, tailLines(r.all.String()))
	}
	if !strings.Contains(r.all.String(), "guest powered off") {
		t.Errorf("no poweroff message:\n%s", tailLines(r.all.String()))
	}
	if w := kernelWarnings(r.all.String()); len(w) > 0 {
		t.Errorf("the guest kernel warned (a CPU model it does not trust, e.g. CPUID leaf 0xD sizes that disagree with XCR0):\n%s",
			strings.Join(w, "\n"))
	}
	t.Logf("smolvm boot to %q: %v [%s]", guest.ReadyMarker, ready.Round(time.Millisecond), kvmtest.Label())
}

// TestKVMBootCLIConsoleShell types into the guest's serial console: the
// default /init's shell runs the command and powers off when told to.
func TestKVMBootCLIConsoleShell(t *testing.T) {
	kvmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startConsole(t, ctx, smolvmBin(t), "boot", "--cpus", "1", "--mem", "256M", "--cmdline", "console=ttyS0 panic=-1 quiet")
	r.waitFor(t, guest.ReadyMarker, 2*time.Minute)
	time.Sleep(500 * time.Millisecond) // let the shell start reading
	if _, err := io.WriteString(r.stdin, "echo typed-$((6*7))\n"); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, "typed-42", time.Minute)
	if _, err := io.WriteString(r.stdin, "poweroff -f\n"); err != nil {
		t.Fatal(err)
	}
	if code := r.finish(t, time.Minute); code != 0 {
		t.Fatalf("exit status %d:\n%s", code, tailLines(r.all.String()))
	}
}

// TestKVMBootCLISIGTERMStops: SIGTERM to smolvm boot stops a running guest
// promptly and the process exits 128+SIGTERM, leaving nothing behind.
func TestKVMBootCLISIGTERMStops(t *testing.T) {
	kvmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := startConsole(t, ctx, smolvmBin(t), "boot", "--cpus", "2", "--mem", "256M", "--cmdline", "console=ttyS0 panic=-1 quiet")
	r.waitFor(t, guest.ReadyMarker, 2*time.Minute)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code := r.finish(t, 30*time.Second)
	if code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit status %d after SIGTERM, want %d:\n%s", code, 128+int(syscall.SIGTERM), tailLines(r.all.String()))
	}
	t.Logf("exited %d, %v after SIGTERM", code, time.Since(start).Round(time.Millisecond))
}

// TestKVMBootCLINotAKernel: a file that is not a bzImage fails cleanly.
func TestKVMBootCLINotAKernel(t *testing.T) {
	kvmtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, smolvmBin(t), "boot", "--kernel", "/etc/passwd", "--initrd", "").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v:\n%s", err, out)
	}
	if !strings.Contains(string(out), "not a bzImage") || strings.Contains(string(out), "panic") {
		t.Fatalf("unclear failure:\n%s", out)
	}
}

// qemuArgs is the reference boot: QEMU/KVM with the same vCPUs, memory,
// kernel, initramfs and command line as the smolvm boot it is compared with.
func qemuArgs(kernel, initrd, cmdline string) []string {
	return []string{"-accel", "kvm", "-smp", "2", "-m", "256", "-nodefaults", "-no-user-config",
		"-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", kernel, "-initrd", initrd, "-append", cmdline}
}

// TestKVMBootTimeVsQEMU boots the default guest to guest.ReadyMarker with
// smolvm and with QEMU/KVM, alternately, and logs both medians and their
// ratio. Process start to the marker line, same kernel, initramfs, command
// line, 2 vCPUs, 256 MiB.
func TestKVMBootTimeVsQEMU(t *testing.T) {
	kvmtest.Require(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 missing: run make deps")
	}
	kernel, err := guest.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := guest.Initramfs(guest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cmdline := "console=ttyS0 panic=-1 quiet " + guest.CmdParam("true")
	// boot returns process start to the ready line, and the guest's own
	// uptime /init printed just before it (where the guest's time went,
	// apart from the VMM's start-up).
	boot := func(name string, args ...string) (time.Duration, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r := startConsole(t, ctx, name, args...)
		d := r.waitFor(t, guest.ReadyMarker, 2*time.Minute)
		uptime := "?"
		for _, l := range strings.Split(r.all.String(), "\n") {
			if u, ok := strings.CutPrefix(l, "smolvm-init: uptime "); ok {
				uptime = u
			}
		}
		if code := r.finish(t, time.Minute); code != 0 {
			t.Fatalf("%s exited %d:\n%s", filepath.Base(name), code, tailLines(r.all.String()))
		}
		return d, uptime
	}
	const rounds = 5
	var ours, theirs []time.Duration
	for i := 0; i < rounds; i++ {
		o, ou := boot(smolvmBin(t), "boot", "--kernel", kernel, "--initrd", initrd, "--cpus", "2", "--mem", "256M", "--cmdline", cmdline)
		q, qu := boot(qemu, qemuArgs(kernel, initrd, cmdline)...)
		ours, theirs = append(ours, o), append(theirs, q)
		t.Logf("round %d: smolvm %v (guest uptime %s s), QEMU/KVM %v (guest uptime %s s)", i+1,
			o.Round(time.Millisecond), ou, q.Round(time.Millisecond), qu)
	}
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	o, q := med(ours), med(theirs)
	t.Logf("boot to %q, median of %d [%s]: smolvm %v, QEMU/KVM %v, ratio QEMU/smolvm %.2f", guest.ReadyMarker, rounds,
		kvmtest.Label(), o.Round(time.Millisecond), q.Round(time.Millisecond), float64(q)/float64(o))
	t.Logf("commands: smolvm boot --kernel K --initrd I --cpus 2 --mem 256M --cmdline %q; %s", cmdline,
		fmt.Sprint("qemu-system-x86_64 ", strings.Join(qemuArgs("K", "I", "..."), " ")))
}

func TestKernelWarnings(t *testing.T) {
	tests := []struct {
		name    string
		console string
		want    int
	}{
		{"clean boot", "[    1.80] x86/fpu: Enabled xstate features 0x207, context size is 2696 bytes, using 'standard' format.\n[    1.92] smp: Brought up 1 node, 2 CPUs\n", 0},
		{"xsave fallback", "[    0.00] ------------[ cut here ]------------\n[    0.00] XSAVE consistency problem: size 576 != kernel_size 2696\n" +
			"[    0.00] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/fpu/xstate.c:700 fpu__init_system_xstate+0x5c1/0x6f0\n[    0.00] x86/fpu: Enabled xstate features 0x0\n", 2},
		{"other WARN", "[    3.1] WARNING: CPU: 1 PID: 9 at kernel/foo.c:1 bar+0x1/0x2\n", 1},
		{"the word alone", "smolvm-init: no WARNING here\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kernelWarnings(tt.console); len(got) != tt.want {
				t.Errorf("kernelWarnings = %q, want %d lines", got, tt.want)
			}
		})
	}
}
