package lab

import (
	"slices"
	"testing"

	"github.com/smolvm/smolvm/internal/initramfs"
)

func TestHiddenInLab(t *testing.T) {
	for _, c := range []struct {
		path   string
		shares []string
		want   bool
	}{
		{"/work/main", nil, false},
		{"/tmp/ci", nil, true},
		{"/tmp", nil, true},
		{"/tmpdir/ci", nil, false},
		{"/run/user/0/x", nil, true},
		{"/tmp/ci/pkg", []string{"/tmp/ci"}, false},
		{"/tmp/ci", []string{"/tmp/ci/"}, false},
		{"/tmp/other", []string{"/tmp/ci"}, true},
		{"/tmp/ci/../x", nil, true},
	} {
		if got := hiddenInLab(c.path, c.shares); got != c.want {
			t.Errorf("hiddenInLab(%q, %q) = %v, want %v", c.path, c.shares, got, c.want)
		}
	}
}

func TestDefaultsShareHiddenDir(t *testing.T) {
	for _, c := range []struct {
		dir    string
		shares []string
		want   []string
	}{
		{"/tmp/ci", nil, []string{"/tmp/ci"}},
		{"/tmp/ci/", nil, []string{"/tmp/ci"}},
		{"/work/main", nil, nil},
	} {
		o := Options{Dir: c.dir, Shares: c.shares, QEMU: "/bin/true", Kernel: initramfs.Kernel{Image: "/vmlinuz"}}
		if err := o.defaults(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(o.Shares, c.want) {
			t.Errorf("Dir %s: shares %q, want %q", c.dir, o.Shares, c.want)
		}
	}
}
