package guest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/smolvm/smolvm/internal/initramfs"
)

// readBack parses a gzip'd cpio archive into name -> (mode, data or target).
func readBack(t *testing.T, file string) map[string]*cpio.Header {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	got := make(map[string]*cpio.Header)
	for {
		h, err := r.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Mode.IsRegular() {
			data, _ := io.ReadAll(r)
			h.Linkname = string(data) // test-only: keep file content here
		}
		got[h.Name] = h
	}
}

// TestDefaultInitramfs builds the default initramfs from the installed cloud
// kernel (make deps installs it) and checks what /init needs is there.
func TestDefaultInitramfs(t *testing.T) {
	if _, err := Kernel(); err != nil {
		t.Fatalf("%v", err)
	}
	cache := t.TempDir()
	p, err := Initramfs(Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, cache+"/") {
		t.Errorf("initramfs at %s, want it under the cache dir %s", p, cache)
	}
	got := readBack(t, p)
	if h := got["init"]; h == nil || h.Mode.Perm() != 0o755 || h.Linkname != string(initScript) {
		t.Fatalf("init missing, not executable or not init.sh: %+v", h)
	}
	if h := got["dev/console"]; h == nil || h.Mode&cpio.ModeType != cpio.TypeChar {
		t.Errorf("dev/console: %+v", h)
	}
	for _, applet := range []string{"bin/sh", "sbin/insmod", "bin/base64", "sbin/poweroff", "usr/bin/setsid", "bin/cttyhack"} {
		if h := got[applet]; h == nil || h.Linkname != "/bin/busybox" {
			t.Errorf("%s: %+v, want a busybox applet link", applet, h)
		}
	}
	list := got["etc/smolvm/modules"]
	if list == nil {
		t.Fatal("etc/smolvm/modules missing")
	}
	loaded := map[string]int{}
	lines := strings.Split(strings.TrimSpace(list.Linkname), "\n")
	for i, m := range lines {
		h := got[strings.TrimPrefix(m, "/")]
		if h == nil || !strings.HasPrefix(h.Linkname, "\x7fELF") {
			t.Errorf("listed module %s is not an ELF file in the archive", m)
		}
		loaded[initramfs.ModuleName(m)] = i
	}
	for _, m := range []string{"virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console", "vsock", "vmw_vsock_virtio_transport"} {
		if _, ok := loaded[m]; !ok {
			t.Errorf("module %s not loaded by /init (list: %v)", m, lines)
		}
	}
	for _, dep := range [][2]string{{"virtio_ring", "virtio_pci"}, {"virtio", "virtio_blk"}, {"vsock", "vmw_vsock_virtio_transport"}} {
		if loaded[dep[0]] >= loaded[dep[1]] {
			t.Errorf("%s is loaded after %s, which needs it", dep[0], dep[1])
		}
	}
	// Same inputs: the cached file is reused.
	if p2, err := Initramfs(Options{CacheDir: cache}); err != nil || p2 != p {
		t.Errorf("second build: %s, %v; want cached %s", p2, err, p)
	}
}

func TestAgentHook(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(agent, []byte("\x7fELF fake agent"), 0o755)
	p, err := Initramfs(Options{CacheDir: t.TempDir(), Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	if h := readBack(t, p)["usr/sbin/smolvm-agent"]; h == nil || h.Linkname != "\x7fELF fake agent" || h.Mode.Perm() != 0o755 {
		t.Errorf("agent not installed: %+v", h)
	}
	if !bytes.Contains(initScript, []byte("/usr/sbin/smolvm-agent &")) {
		t.Error("init.sh does not start the agent")
	}
}

func TestMissingInputs(t *testing.T) {
	root := t.TempDir()
	oldBoot, oldMods := bootDir, modulesRoot
	bootDir, modulesRoot = filepath.Join(root, "boot"), filepath.Join(root, "modules")
	t.Cleanup(func() { bootDir, modulesRoot = oldBoot, oldMods })

	_, err := Kernel()
	if !errors.Is(err, initramfs.ErrNotFound) || !strings.Contains(err.Error(), "install linux-image-cloud-amd64, or run make deps") {
		t.Errorf("Kernel() with no kernel = %v", err)
	}
	if _, err := Initramfs(Options{CacheDir: root}); !errors.Is(err, initramfs.ErrNotFound) {
		t.Errorf("Initramfs with no kernel = %v", err)
	}
	// A kernel whose module tree lacks what the guest needs.
	mods := filepath.Join(root, "modules", "6.1.0-1-cloud-amd64")
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(mods, "modules.dep"), []byte("kernel/x.ko:\n"), 0o644)
	k := initramfs.Kernel{Image: "/dev/null", Version: "6.1.0-1-cloud-amd64", Modules: mods}
	if _, err := Initramfs(Options{CacheDir: root, Kernel: k}); !errors.Is(err, initramfs.ErrNotFound) || !strings.Contains(err.Error(), "virtio_pci") {
		t.Errorf("Initramfs with an incomplete module tree = %v, want ErrNotFound naming virtio_pci", err)
	}
	if _, err := Initramfs(Options{CacheDir: root, Busybox: "/nonexistent/busybox", Kernel: k}); !errors.Is(err, initramfs.ErrNotFound) {
		t.Errorf("Initramfs without busybox = %v", err)
	}
}

// TestCmdParam decodes the parameter the way /init does, with busybox.
func TestCmdParam(t *testing.T) {
	for _, script := range []string{"echo hi", "a='x y'; echo \"$a\"\nexit 3", "printf '%s\\n' ü ✓"} {
		p := CmdParam(script)
		if strings.ContainsAny(p, " \t\n\"'") {
			t.Errorf("CmdParam(%q) = %q: not one kernel parameter", script, p)
		}
		enc := strings.TrimPrefix(p, "smolvm.cmd=")
		cmd := exec.Command(initramfs.DefaultBusybox, "sh", "-c", `echo "$1" | base64 -d`, "sh", enc)
		out, err := cmd.Output()
		if err != nil || string(out) != script {
			t.Errorf("busybox base64 -d of %q = %q, %v; want %q", enc, out, err, script)
		}
	}
}

// TestInitScriptSyntax parses init.sh with busybox sh -n.
func TestInitScriptSyntax(t *testing.T) {
	f := filepath.Join(t.TempDir(), "init.sh")
	os.WriteFile(f, initScript, 0o755)
	if out, err := exec.Command(initramfs.DefaultBusybox, "sh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("busybox sh -n init.sh: %v: %s", err, out)
	}
	for _, want := range []string{ReadyMarker, "smolvm-init: exit=", "smolvm.cmd=", "poweroff -f", "setsid cttyhack sh"} {
		if !bytes.Contains(initScript, []byte(want)) {
			t.Errorf("init.sh lacks %q", want)
		}
	}
}
