package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/smolvm/smolvm/internal/initramfs"
)

// Sentinel errors, for errors.Is.
var (
	// ErrUnavailable: the lab cannot start (a package or file is missing).
	ErrUnavailable = errors.New("lab unavailable")
	// ErrTimeout: the run took longer than Options.Timeout; QEMU was killed.
	ErrTimeout = errors.New("lab timed out")
	// ErrWedged: the lab VM's own kernel locked up or panicked (see
	// watchConsole); an infrastructure failure, not a verdict on the command.
	ErrWedged = errors.New("lab VM wedged")
	// ErrNoStatus: the VM ended without reporting the command's exit status.
	ErrNoStatus = errors.New("lab VM ended without an exit status")
)

// Options say what to run in the lab and with what VM.
type Options struct {
	Cmd     []string      // program and arguments, run with a host path visible at the same path
	Env     []string      // extra KEY=VALUE pairs; SMOLVM_LAB=1, PATH, HOME and TMPDIR are set
	Dir     string        // working directory inside the lab; "" means the caller's; shared when the lab hides it (under /tmp)
	Shares  []string      // host directories mounted writable at the same paths (results come back)
	MemMB   int           // lab VM memory; 0 means 4096
	CPUs    int           // lab VM vCPUs; 0 means 2
	Timeout time.Duration // whole run, boot included; 0 means 10 minutes
	Stdout  io.Writer     // the command's stdout and stderr, merged; nil means os.Stdout

	// TCGThread is QEMU's TCG threading: "" or "multi" (one host thread per
	// lab vCPU, QEMU's default) or "single" (all lab vCPUs on one thread).
	TCGThread string

	// Silence, when > 0, gives the lab up as wedged (ErrWedged) once neither
	// its kernel console nor the command's output has grown for that long:
	// a lab VM that stalls without a panic or lockup message.
	Silence time.Duration

	// ConsoleLog, when set, is where the lab VM's kernel console is written
	// (kept after the run); by default it goes to a temporary file.
	ConsoleLog string

	// Kernel, CacheDir and QEMU override the defaults: the newest generic
	// Debian kernel (linux-image-amd64), initramfs.CacheDir() and
	// qemu-system-x86_64 on PATH.
	Kernel   initramfs.Kernel
	CacheDir string
	QEMU     string
}

const (
	defaultMemMB   = 4096
	defaultCPUs    = 2
	defaultTimeout = 10 * time.Minute
	// ctlMount is where the control share appears inside the lab.
	ctlMount = "/.smolvm-lab"
)

// Run boots the lab VM, runs o.Cmd inside it and returns its exit status.
// err is non-nil only when the lab itself failed: it could not start, timed
// out, or ended without reporting a status; then exitCode is -1.
func Run(ctx context.Context, o Options) (exitCode int, err error) {
	if len(o.Cmd) == 0 {
		return -1, errors.New("lab: no command to run")
	}
	if err := o.defaults(); err != nil {
		return -1, err
	}
	initrd, err := buildInitramfs(o.Kernel, o.CacheDir)
	if err != nil {
		return -1, fmt.Errorf("lab: building the lab VM's initramfs: %w", err)
	}
	ctl, err := os.MkdirTemp("", "smolvm-lab-*")
	if err != nil {
		return -1, fmt.Errorf("lab: %w", err)
	}
	defer os.RemoveAll(ctl)
	nonce, err := writeControl(ctl, o)
	if err != nil {
		return -1, err
	}

	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	consoleLog := filepath.Join(ctl, "console.log")
	if o.ConsoleLog != "" {
		consoleLog = o.ConsoleLog
	}
	act := &activity{}
	ctx, wedged := watchConsole(ctx, consoleLog, act, o.Silence)
	cmd := exec.CommandContext(ctx, o.QEMU, qemuArgs(o, initrd, ctl, consoleLog)...)
	mw := newMarkerWriter(o.Stdout, nonce)
	var qemuErr bytes.Buffer
	cmd.Stdout = activeWriter{w: mw, a: act}
	cmd.Stderr = &qemuErr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	runErr := cmd.Run()
	outErr := mw.Close()

	code, found := mw.status()
	switch {
	case wedged() != "":
		return -1, fmt.Errorf("lab: %w after %v: %s (QEMU killed); %s", ErrWedged, time.Since(start).Round(time.Second), wedged(), consoleTail(consoleLog))
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return -1, fmt.Errorf("lab: %w after %v (QEMU killed); %s", ErrTimeout, o.Timeout, consoleTail(consoleLog))
	case ctx.Err() != nil:
		return -1, fmt.Errorf("lab: %w (QEMU killed)", ctx.Err())
	case !found && consoleFileWedged(consoleLog):
		// The kernel panicked and QEMU (-no-reboot) exited before the
		// console watch saw it: the same wedge.
		return -1, fmt.Errorf("lab: %w after %v: its kernel panicked and QEMU exited; %s", ErrWedged,
			time.Since(start).Round(time.Millisecond), consoleTail(consoleLog))
	case !found:
		what := "QEMU exited"
		if runErr != nil {
			what = fmt.Sprintf("QEMU failed: %v", runErr)
		}
		return -1, fmt.Errorf("lab: %w after %v: %s; QEMU stderr: %q; %s", ErrNoStatus,
			time.Since(start).Round(time.Millisecond), what, strings.TrimSpace(qemuErr.String()), consoleTail(consoleLog))
	case outErr != nil:
		return code, fmt.Errorf("lab: writing the command's output: %w", outErr)
	}
	return code, nil
}

func (o *Options) defaults() error {
	if o.MemMB == 0 {
		o.MemMB = defaultMemMB
	}
	if o.CPUs == 0 {
		o.CPUs = defaultCPUs
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		o.Dir = wd
	}
	for i, s := range o.Shares {
		abs, err := filepath.Abs(s)
		if err != nil {
			return fmt.Errorf("lab: share %s: %w", s, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return fmt.Errorf("lab: share %s is not a directory", s)
		}
		o.Shares[i] = abs
	}
	// A working directory the lab would hide (a checkout under /tmp, say)
	// is shared, so that the command finds it at its own path.
	if hiddenInLab(o.Dir, o.Shares) {
		o.Shares = append(o.Shares, filepath.Clean(o.Dir))
	}
	if o.QEMU == "" {
		q, err := exec.LookPath("qemu-system-x86_64")
		if err != nil {
			return fmt.Errorf("lab: %w: qemu-system-x86_64 not found (install qemu-system-x86, or run make deps)", ErrUnavailable)
		}
		o.QEMU = q
	}
	if o.Kernel.Image == "" {
		k, err := initramfs.NewestKernel("/boot", "/lib/modules", "amd64", "linux-image-amd64")
		if err != nil {
			return fmt.Errorf("lab: %w: %w", ErrUnavailable, err)
		}
		o.Kernel = k
	}
	return nil
}

// writeControl writes lab.conf, shares and run.sh into the control
// directory and returns the run's marker nonce.
func writeControl(dir string, o Options) (string, error) {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	nonce := hex.EncodeToString(r[:])
	var run strings.Builder
	run.WriteString("# generated by internal/lab: the command to run inside the lab VM\n")
	env := append([]string{
		"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TMPDIR=/tmp", "SMOLVM_LAB=1",
	}, o.Env...)
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !validName(k) {
			return "", fmt.Errorf("lab: bad environment entry %q (want KEY=VALUE)", kv)
		}
		fmt.Fprintf(&run, "export %s=%s\n", k, shellQuote(v))
	}
	fmt.Fprintf(&run, "cd %s || exit 125\nexec", shellQuote(o.Dir))
	for _, a := range o.Cmd {
		run.WriteString(" " + shellQuote(a))
	}
	run.WriteString("\n")
	files := map[string]string{
		"lab.conf": "NONCE=" + nonce + "\n",
		"shares":   strings.Join(append(o.Shares, ""), "\n"),
		"run.sh":   run.String(),
	}
	if len(o.Shares) == 0 {
		files["shares"] = ""
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("lab: %w", err)
		}
	}
	return nonce, nil
}

func validName(k string) bool {
	if k == "" || (k[0] >= '0' && k[0] <= '9') {
		return false
	}
	for _, c := range k {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// qemuArgs is the lab VM's QEMU command line (LAB.md, "Level 1").
func qemuArgs(o Options, initrd, ctl, consoleLog string) []string {
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", accel(o.TCGThread), "-cpu", "max",
		"-smp", strconv.Itoa(o.CPUs), "-m", strconv.Itoa(o.MemMB),
		"-kernel", o.Kernel.Image, "-initrd", initrd,
		"-append", "console=ttyS0 quiet loglevel=4 panic=-1",
		"-serial", "file:" + qemuEscape(consoleLog), // ttyS0: kernel console
		"-serial", "stdio", // ttyS1: the command's output
		"-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + qemuEscape(ctl) + ",mount_tag=ctl,security_model=none",
	}
	for i, s := range o.Shares {
		args = append(args, "-virtfs", fmt.Sprintf("local,path=%s,mount_tag=share%d,security_model=none", qemuEscape(s), i))
	}
	return args
}

// qemuEscape doubles commas, QEMU's option separator, in a value.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// consoleTail returns the last lines of the lab VM's kernel console, for
// errors.
func consoleTail(file string) string {
	b, err := os.ReadFile(file)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "the lab VM's console printed nothing"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	return "lab VM console (last lines):\n" + strings.Join(lines, "\n")
}

// accel is QEMU's -accel value for the TCG threading mode.
func accel(thread string) string {
	if thread == "" {
		return "tcg"
	}
	return "tcg,thread=" + thread
}
