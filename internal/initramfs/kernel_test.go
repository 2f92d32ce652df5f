package initramfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestNewestKernel(t *testing.T) {
	root := t.TempDir()
	boot, mods := filepath.Join(root, "boot"), filepath.Join(root, "modules")
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-10-amd64", "6.1.0-56-cloud-amd64", "6.1.0-60-rt-amd64", "6.1.0-70-cloud-amd64"} {
		os.MkdirAll(boot, 0o755)
		os.WriteFile(filepath.Join(boot, "vmlinuz-"+v), []byte("k"), 0o644)
		if v != "6.1.0-70-cloud-amd64" { // newest cloud lacks modules
			os.MkdirAll(filepath.Join(mods, v), 0o755)
			os.WriteFile(filepath.Join(mods, v, "modules.dep"), nil, 0o644)
		}
	}
	tests := []struct {
		flavour, want string
		wantErr       error
	}{
		{"amd64", "6.1.0-56-amd64", nil},
		{"rt-amd64", "6.1.0-60-rt-amd64", nil},
		{"cloud-amd64", "", ErrNotFound}, // newest has no module tree
		{"arm64", "", ErrNotFound},
	}
	for _, tt := range tests {
		k, err := NewestKernel(boot, mods, tt.flavour, "linux-image-"+tt.flavour)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: err = %v, want %v", tt.flavour, err, tt.wantErr)
			}
			continue
		}
		if err != nil || k.Version != tt.want || k.Image != filepath.Join(boot, "vmlinuz-"+tt.want) || k.Modules != filepath.Join(mods, tt.want) {
			t.Errorf("%s: %+v, %v; want version %s", tt.flavour, k, err, tt.want)
		}
	}
}
