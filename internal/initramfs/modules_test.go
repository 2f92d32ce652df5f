package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// A fake module tree shaped like Debian's: virtio_pci needs four modules,
// 9p needs three, kvm-amd three; virtio_blk is gzip'd, fuse zstd'd.
const fakeDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko.gz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/fuse/fuse.ko.zst:
kernel/net/9p/9pnet.ko:
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/arch/x86/kvm/kvm.ko: kernel/virt/lib/irqbypass.ko
kernel/virt/lib/irqbypass.ko:
kernel/drivers/crypto/ccp/ccp.ko:
kernel/arch/x86/kvm/kvm-amd.ko: kernel/drivers/crypto/ccp/ccp.ko kernel/arch/x86/kvm/kvm.ko kernel/virt/lib/irqbypass.ko
kernel/a/cyc1.ko: kernel/a/cyc2.ko
kernel/a/cyc2.ko: kernel/a/cyc1.ko
kernel/a/dangling.ko: kernel/a/absent.ko
`

func fakeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "6.1.0-fake")
	deps, err := ParseModulesDep(strings.NewReader(fakeDep), "fake")
	if err != nil {
		t.Fatal(err)
	}
	for f := range deps {
		content := []byte("\x7fELF module " + ModuleName(f))
		switch {
		case strings.HasSuffix(f, ".gz"):
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(content)
			zw.Close()
			content = b.Bytes()
		case strings.HasSuffix(f, ".zst"):
			zw, _ := zstd.NewWriter(nil)
			content = zw.EncodeAll(content, nil)
			zw.Close()
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", fakeDep)
	write("modules.builtin", "kernel/fs/ext4/ext4.ko\nkernel/lib/crc16.ko\n")
	return dir
}

func names(files []string) []string {
	var out []string
	for _, f := range files {
		out = append(out, ModuleName(f))
	}
	return out
}

func TestResolve(t *testing.T) {
	m, err := LoadModules(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in          []string
		want        []string
		wantBuiltin []string
		wantErr     error
	}{
		{in: []string{"virtio_pci"}, want: []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci"}},
		{in: []string{"virtio_pci", "virtio_blk"}, want: []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk"}},
		{in: []string{"9p", "kvm-amd", "fuse"}, want: []string{"netfs", "fscache", "9pnet", "9p", "irqbypass", "kvm", "ccp", "kvm_amd", "fuse"}},
		{in: []string{"kvm_amd", "kvm"}, want: []string{"irqbypass", "kvm", "ccp", "kvm_amd"}},
		{in: []string{"ext4", "virtio_blk"}, want: []string{"virtio_ring", "virtio", "virtio_blk"}, wantBuiltin: []string{"ext4"}},
		{in: nil, want: nil},
		{in: []string{"nosuch"}, wantErr: ErrNotFound},
		{in: []string{"dangling"}, wantErr: ErrNotFound},
		{in: []string{"cyc1"}, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			files, builtin, err := m.Resolve(tt.in...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%v) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(files); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%v) = %v, want %v", tt.in, got, tt.want)
			}
			if !reflect.DeepEqual(builtin, tt.wantBuiltin) {
				t.Errorf("builtin = %v, want %v", builtin, tt.wantBuiltin)
			}
		})
	}
}

func TestAddModules(t *testing.T) {
	m, err := LoadModules(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	var a Archive
	order, _, err := a.AddModules(m, "virtio_blk", "fuse", "kvm_amd")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/lib/modules/6.1.0-fake/kernel/drivers/virtio/virtio_ring.ko",
		"/lib/modules/6.1.0-fake/kernel/drivers/virtio/virtio.ko",
		"/lib/modules/6.1.0-fake/kernel/drivers/block/virtio_blk.ko",
		"/lib/modules/6.1.0-fake/kernel/fs/fuse/fuse.ko",
		"/lib/modules/6.1.0-fake/kernel/virt/lib/irqbypass.ko",
		"/lib/modules/6.1.0-fake/kernel/arch/x86/kvm/kvm.ko",
		"/lib/modules/6.1.0-fake/kernel/drivers/crypto/ccp/ccp.ko",
		"/lib/modules/6.1.0-fake/kernel/arch/x86/kvm/kvm-amd.ko",
	}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("load order\n got %v\nwant %v", order, want)
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, _ := readArchive(t, buf.Bytes())
	for _, p := range want {
		if g := got[p[1:]].data; g != "\x7fELF module "+ModuleName(p) {
			t.Errorf("%s holds %q, want the decompressed module", p, g)
		}
	}
}

func TestBadModuleFiles(t *testing.T) {
	dir := fakeTree(t)
	m, err := LoadModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt one compressed module and one plain one.
	os.WriteFile(filepath.Join(dir, "kernel/fs/fuse/fuse.ko.zst"), []byte("not zstd"), 0o644)
	os.WriteFile(filepath.Join(dir, "kernel/net/9p/9pnet.ko"), []byte("text"), 0o644)
	os.Remove(filepath.Join(dir, "kernel/virt/lib/irqbypass.ko"))
	for _, tt := range []struct {
		mod  string
		want error
		msg  string
	}{
		{"fuse", ErrInvalid, "fuse.ko.zst"},
		{"9pnet", ErrInvalid, "not an ELF"},
		{"kvm", ErrNotFound, "irqbypass.ko"},
	} {
		var a Archive
		_, _, err := a.AddModules(m, tt.mod)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("AddModules(%s) = %v, want %v mentioning %q", tt.mod, err, tt.want, tt.msg)
		}
	}
	if _, err := LoadModules(t.TempDir()); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadModules(empty dir) = %v, want ErrNotFound", err)
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	for _, in := range []string{
		"kernel/a.ko kernel/b.ko\n",
		"/abs/a.ko:\n",
		"kernel/../../etc/a.ko:\n",
		"kernel/a.ko: ../b.ko\n",
		"kernel/a.txt:\n",
		"kernel/a.ko:\nkernel/a.ko:\n",
	} {
		if _, err := ParseModulesDep(strings.NewReader(in), "test"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "test line") {
			t.Errorf("ParseModulesDep(%q) = %v, want ErrInvalid naming the line", in, err)
		}
	}
}

// TestDebianModuleOrder compares Resolve with modprobe on the installed
// Debian kernels (make deps installs them).
func TestDebianModuleOrder(t *testing.T) {
	trees, _ := filepath.Glob("/lib/modules/*/modules.dep")
	modprobe, err := exec.LookPath("modprobe")
	if len(trees) == 0 || err != nil {
		t.Skip("no installed kernel module tree or modprobe (run make deps)")
	}
	for _, dep := range trees {
		dir := filepath.Dir(dep)
		m, err := LoadModules(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, mod := range []string{"virtio_pci", "9p", "kvm_amd", "vmw_vsock_virtio_transport", "virtio_net"} {
			files, _, err := m.Resolve(mod)
			if errors.Is(err, ErrNotFound) {
				continue // not in this kernel (9p is absent from cloud)
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(modprobe, "-S", filepath.Base(dir), "--show-depends", mod).Output()
			if err != nil {
				t.Fatalf("modprobe --show-depends %s: %v", mod, err)
			}
			var want []string
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(l); len(f) >= 2 && f[0] == "insmod" {
					want = append(want, strings.TrimPrefix(f[1], dir+"/"))
				}
			}
			if !validOrder(m, files) || !sameSet(files, want) {
				t.Errorf("%s %s: Resolve = %v, modprobe = %v", filepath.Base(dir), mod, files, want)
			}
		}
	}
}

// validOrder reports whether every module comes after its dependencies.
func validOrder(m *Modules, files []string) bool {
	pos := make(map[string]int)
	for i, f := range files {
		pos[f] = i
	}
	for i, f := range files {
		for _, d := range m.deps[f] {
			if p, ok := pos[d]; !ok || p >= i {
				return false
			}
		}
	}
	return true
}

func sameSet(a, b []string) bool {
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	return reflect.DeepEqual(x, y)
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add(fakeDep)
	f.Add("a.ko:\n")
	f.Add("a.ko: b.ko\nb.ko:\n# comment\n\n")
	f.Add(":\n")
	f.Add("a.ko: a.ko\n")
	f.Fuzz(func(t *testing.T, in string) {
		deps, err := ParseModulesDep(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		// Whatever parses must be well formed, serialize and parse again
		// to the same map, and resolve without panicking.
		var b strings.Builder
		m := &Modules{Dir: "/fuzz", deps: deps, byName: map[string]string{}, builtin: map[string]bool{}}
		for mod, ds := range deps {
			if checkModulePath(mod) != nil {
				t.Fatalf("accepted bad path %q", mod)
			}
			fmt.Fprintf(&b, "%s: %s\n", mod, strings.Join(ds, " "))
			m.byName[ModuleName(mod)] = mod
		}
		again, err := ParseModulesDep(strings.NewReader(b.String()), "again")
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again) != len(deps) {
			t.Fatalf("re-parse gave %d modules, want %d", len(again), len(deps))
		}
		for mod := range deps {
			files, _, err := m.Resolve(mod)
			if err == nil && !validOrder(m, files) {
				t.Fatalf("Resolve(%s) = %v: dependency after dependent", mod, files)
			}
		}
	})
}
