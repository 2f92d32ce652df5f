package lab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"", "a b", "it's", `"$HOME" $(id) \n`, "x'y'z"} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh printf %s = %q, %v; want %q", shellQuote(s), out, err, s)
		}
	}
}

func TestWriteControl(t *testing.T) {
	dir := t.TempDir()
	o := Options{Cmd: []string{"prog", "a b"}, Env: []string{"X=1 2"}, Dir: "/w", Shares: []string{"/s1", "/s,2"}}
	nonce, err := writeControl(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	run, _ := os.ReadFile(filepath.Join(dir, "run.sh"))
	conf, _ := os.ReadFile(filepath.Join(dir, "lab.conf"))
	shares, _ := os.ReadFile(filepath.Join(dir, "shares"))
	for _, want := range []string{"export SMOLVM_LAB='1'\n", "export X='1 2'\n", "cd '/w' || exit 125\n", "exec 'prog' 'a b'\n"} {
		if !strings.Contains(string(run), want) {
			t.Errorf("run.sh lacks %q:\n%s", want, run)
		}
	}
	if string(conf) != "NONCE="+nonce+"\n" || len(nonce) != 16 {
		t.Errorf("lab.conf = %q (nonce %q)", conf, nonce)
	}
	if string(shares) != "/s1\n/s,2\n" {
		t.Errorf("shares = %q", shares)
	}
	for _, bad := range []string{"NOEQUALS", "=v", "1X=v", "A-B=v"} {
		if _, err := writeControl(dir, Options{Cmd: []string{"x"}, Env: []string{bad}}); err == nil {
			t.Errorf("env %q accepted", bad)
		}
	}
	args := strings.Join(qemuArgs(Options{CPUs: 2, MemMB: 64, Shares: []string{"/a,b"}}, "i", "/c,d", "/l"), " ")
	for _, want := range []string{"path=/a,,b,mount_tag=share0", "path=/c,,d,mount_tag=ctl", "-accel tcg -cpu max"} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q: %s", want, args)
		}
	}
}

func TestRunErrors(t *testing.T) {
	if _, err := Run(context.Background(), Options{}); err == nil {
		t.Error("Run with no command: no error")
	}
	t.Setenv("PATH", t.TempDir())
	_, err := Run(context.Background(), Options{Cmd: []string{"true"}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Errorf("Run without QEMU = %v, want ErrUnavailable naming the package", err)
	}
}

// requireLab fails (not skips) when the lab's packages are missing: make
// deps installs them on every machine that runs make test.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots the lab VM (seconds to tens of seconds under TCG)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 missing: run make deps")
	}
}

// TestRunInLab boots the lab VM for real: the command's output, exit status,
// environment, /dev/kvm and a writable share must all come back.
func TestRunInLab(t *testing.T) {
	requireLab(t)
	share := t.TempDir()
	script := `echo "lab=$SMOLVM_LAB extra=$EXTRA"
test -c /dev/kvm && test -c /dev/fuse && test -c /dev/userfaultfd && echo devices-ok
test -d /sys/module/kvm_amd && echo kvm_amd-loaded
pwd
echo result >` + share + `/out.txt
echo to-stderr >&2
exit 7`
	var out strings.Builder
	code, err := Run(context.Background(), Options{
		Cmd: []string{"sh", "-c", script}, Env: []string{"EXTRA=x y"}, Dir: "/usr",
		Shares: []string{share}, MemMB: 1024, Timeout: 3 * time.Minute, Stdout: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	want := "lab=1 extra=x y\ndevices-ok\nkvm_amd-loaded\n/usr\nto-stderr\n"
	if out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if b, err := os.ReadFile(filepath.Join(share, "out.txt")); err != nil || string(b) != "result\n" {
		t.Errorf("share file: %q, %v", b, err)
	}
}

func TestRunTimeout(t *testing.T) {
	requireLab(t)
	start := time.Now()
	_, err := Run(context.Background(), Options{Cmd: []string{"sleep", "600"}, MemMB: 512, Timeout: 3 * time.Second, Stdout: &strings.Builder{}})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("timeout of 3s took %v to return", d)
	}
}
