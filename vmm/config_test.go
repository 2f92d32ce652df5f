package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
)

// cloudKernel returns an installed Debian kernel, or skips: `make test`
// installs linux-image-cloud-amd64.
func cloudKernel(t *testing.T) string {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(ks) == 0 {
		ks, _ = filepath.Glob("/boot/vmlinuz-*")
	}
	if len(ks) == 0 {
		t.Skip("no /boot/vmlinuz-* installed (make deps installs linux-image-cloud-amd64)")
	}
	return ks[len(ks)-1]
}

// TestNewRejectsBadInput checks that bad configurations fail before any KVM
// object exists, with an error naming the cause; none needs /dev/kvm.
func TestNewRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKernel, []byte(strings.Repeat("not a kernel\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := Config{Kernel: notKernel, CPUs: 1, MemBytes: 256 << 20}
	for _, c := range []struct {
		name    string
		edit    func(*Config)
		is      []error
		mention string
	}{
		{"no kernel", func(c *Config) { c.Kernel = "" }, []error{ErrConfig}, "no kernel"},
		{"missing kernel", func(c *Config) { c.Kernel = filepath.Join(dir, "nope") }, []error{ErrConfig, os.ErrNotExist}, "nope"},
		{"not a bzImage", func(c *Config) {}, []error{ErrConfig, amd64.ErrNotBzImage}, "notes.txt"},
		{"empty kernel", func(c *Config) { c.Kernel = empty }, []error{ErrConfig, amd64.ErrNotBzImage}, "empty"},
		{"zero CPUs", func(c *Config) { c.CPUs = 0 }, []error{ErrConfig}, "0 vCPUs"},
		{"too many CPUs", func(c *Config) { c.CPUs = amd64.MaxCPUs + 1 }, []error{ErrConfig}, "vCPUs"},
		{"tiny memory", func(c *Config) { c.MemBytes = 1 << 20 }, []error{ErrConfig}, "memory"},
		{"unaligned memory", func(c *Config) { c.MemBytes = 256<<20 + 4096 }, []error{ErrConfig}, "multiple"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := good
			c.edit(&cfg)
			m, err := New(cfg)
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			for _, target := range c.is {
				if !errors.Is(err, target) {
					t.Errorf("error %q is not %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

// TestNewKernelTooBigForMemory boots nothing: the kernel's init_size does not
// fit in 16 MiB, which New must report before touching /dev/kvm.
func TestNewKernelTooBigForMemory(t *testing.T) {
	k := cloudKernel(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		cfg    Config
		expect string
	}{
		{"kernel", Config{Kernel: k, CPUs: 1, MemBytes: MinMemBytes}, "kernel needs memory"},
		{"initrd", Config{Kernel: k, Initrd: initrd, CPUs: 1, MemBytes: 80 << 20}, "initrd"},
		{"missing initrd", Config{Kernel: k, Initrd: filepath.Join(dir, "nope"), CPUs: 1, MemBytes: 256 << 20}, "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := New(c.cfg)
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.expect) {
				t.Fatalf("error %q: want ErrConfig mentioning %q", err, c.expect)
			}
		})
	}
}
