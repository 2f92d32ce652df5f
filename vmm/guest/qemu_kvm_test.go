package guest

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// QEMUBootArgs is the reference boot that `smolvm boot` is compared with:
// QEMU/KVM, 2 vCPUs, 256 MiB, the default kernel and initramfs.
func qemuBootArgs(kernel, initrd, cmdline string) []string {
	return []string{
		"-accel", "kvm", "-smp", "2", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
	}
}

type bootResult struct {
	toReady time.Duration // QEMU start to the ReadyMarker line
	uptime  string        // guest uptime /init printed just before it
	console []string
}

// bootQEMU boots the default guest under QEMU/KVM with script as smolvm.cmd
// and returns when QEMU exits; the guest must print ReadyMarker and, when
// script is not "", exit 0. Without a script, input is typed on the console
// once the guest is ready.
func bootQEMU(t testing.TB, script, input string) bootResult {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 missing: run make deps")
	}
	kernel, err := Kernel()
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := Initramfs(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmdline := "console=ttyS0 panic=-1 quiet"
	if script != "" {
		cmdline += " " + CmdParam(script)
	}
	cmd := exec.CommandContext(ctx, qemu, qemuBootArgs(kernel, initrd, cmdline)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var r bootResult
	// Read byte by byte: the shell prompt ("/ # ") ends no line. Each input
	// line is typed after a prompt, once the guest is ready.
	pending := strings.SplitAfter(input, "\n")
	br := bufio.NewReader(out)
	var cur []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			break
		}
		if c != '\n' {
			cur = append(cur, c)
			if r.toReady != 0 && len(pending) > 0 && pending[0] != "" && strings.HasSuffix(string(cur), "# ") {
				io.WriteString(in, pending[0])
				pending = pending[1:]
			}
			continue
		}
		line := strings.TrimRight(string(cur), "\r")
		cur = cur[:0]
		r.console = append(r.console, line)
		switch {
		case line == ReadyMarker && r.toReady == 0:
			r.toReady = time.Since(start)
		case strings.HasPrefix(line, "smolvm-init: uptime "):
			r.uptime = strings.TrimPrefix(line, "smolvm-init: uptime ")
		}
	}
	io.Copy(io.Discard, out)
	in.Close()
	werr := cmd.Wait()
	console := strings.Join(r.console, "\n")
	if ctx.Err() != nil {
		t.Fatalf("QEMU killed after 3 minutes; console:\n%s", console)
	}
	if werr != nil {
		t.Fatalf("QEMU: %v: %s; console:\n%s", werr, stderr.String(), console)
	}
	if r.toReady == 0 {
		t.Fatalf("no %q line; console:\n%s", ReadyMarker, console)
	}
	if script != "" && !strings.Contains(console, ExitMarkerPrefix+"0") {
		t.Fatalf("the smolvm.cmd script did not exit 0; console:\n%s", console)
	}
	if strings.Contains(console, "insmod") {
		t.Fatalf("a module failed to load; console:\n%s", console)
	}
	return r
}

// TestKVMQEMUBootToReady boots the default guest under QEMU/KVM (the
// reference `smolvm boot` is measured against, in the same lab run), checks
// that /init loaded the virtio modules, ran the smolvm.cmd script and
// powered off, and logs the boot-to-ready time (one boot, to keep make
// test-kvm short: cmd/smolvm's TestKVMBootTimeVsQEMU and
// BenchmarkQEMUBootToReady repeat it).
func TestKVMQEMUBootToReady(t *testing.T) {
	kvmtest.Require(t)
	const script = `echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
for m in virtio_pci virtio_blk virtio_net virtio_rng virtio_console vmw_vsock_virtio_transport; do
	grep -q "^$m " /proc/modules || echo "module $m not loaded"
done
echo 'quoted "args" ok'`
	r := bootQEMU(t, script, "")
	console := strings.Join(r.console, "\n")
	for _, want := range []string{"cpus=2", `quoted "args" ok`} {
		if !strings.Contains(console, want) {
			t.Fatalf("console lacks %q:\n%s", want, console)
		}
	}
	if strings.Contains(console, "not loaded") {
		t.Fatalf("modules missing:\n%s", console)
	}
	t.Logf("QEMU/KVM start to %q: %v (guest uptime %s s) [%s]; command: qemu-system-x86_64 %s",
		ReadyMarker, r.toReady.Round(time.Millisecond), r.uptime, kvmtest.Label(),
		strings.Join(qemuBootArgs("KERNEL", "INITRD", "console=ttyS0 panic=-1 quiet smolvm.cmd=..."), " "))
}

// TestKVMQEMUConsoleShell boots the default guest without smolvm.cmd: /init
// must start a shell on the serial console that takes typed commands and
// power the guest off when it exits.
func TestKVMQEMUConsoleShell(t *testing.T) {
	kvmtest.Require(t)
	r := bootQEMU(t, "", "echo shell-$((6*7)) on $(tty)\nexit\n")
	console := strings.Join(r.console, "\n")
	if !strings.Contains(console, "shell-42 on /dev/ttyS0") {
		t.Fatalf("the console shell did not run the typed command; console:\n%s", console)
	}
}

// BenchmarkQEMUBootToReady reports QEMU/KVM's boot-to-ReadyMarker time for
// the default guest, in seconds per boot. docs/LAB.md shows how to run it in
// the lab.
func BenchmarkQEMUBootToReady(b *testing.B) {
	kvmtest.Require(b)
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += bootQEMU(b, "true", "").toReady
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
	b.ReportMetric(0, "ns/op")
	b.Logf("figures are %s", kvmtest.Label())
}
