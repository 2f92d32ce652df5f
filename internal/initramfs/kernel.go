package initramfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Kernel is an installed Debian kernel: its image and the module tree of the
// same version.
type Kernel struct {
	Image   string // /boot/vmlinuz-6.1.0-56-cloud-amd64
	Version string // 6.1.0-56-cloud-amd64
	Modules string // /lib/modules/6.1.0-56-cloud-amd64
}

// NewestKernel finds the newest bootDir/vmlinuz-VERSION whose flavour (what
// follows "UPSTREAM-ABI-" in a Debian version: "amd64", "cloud-amd64") is
// exactly flavour, with its module tree under modulesRoot. pkg names the
// Debian package to suggest when none is installed.
func NewestKernel(bootDir, modulesRoot, flavour, pkg string) (Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*-"+flavour))
	var found []Kernel
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if kernelFlavour(v) != flavour {
			continue
		}
		found = append(found, Kernel{Image: img, Version: v, Modules: filepath.Join(modulesRoot, v)})
	}
	if len(found) == 0 {
		return Kernel{}, fmt.Errorf("initramfs: %w: no %s/vmlinuz-*-%s kernel (install %s, or run make deps)", ErrNotFound, bootDir, flavour, pkg)
	}
	sort.Slice(found, func(i, j int) bool { return versionLess(found[i].Version, found[j].Version) })
	k := found[len(found)-1]
	if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
		return Kernel{}, fmt.Errorf("initramfs: %w: kernel %s has no %s/modules.dep (reinstall %s)", ErrNotFound, k.Image, k.Modules, pkg)
	}
	return k, nil
}

// kernelFlavour returns what follows the second '-' of a Debian kernel
// version: 6.1.0-56-cloud-amd64 -> cloud-amd64.
func kernelFlavour(v string) string {
	parts := strings.SplitN(v, "-", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[2]
}

// versionLess compares the numeric fields of two kernel versions
// (6.1.0-9 < 6.1.0-56), falling back to string order.
func versionLess(a, b string) bool {
	na, nb := numbers(a), numbers(b)
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return a < b
}

func numbers(s string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}
