package lab

import (
	_ "embed"
	"strings"

	"github.com/smolvm/smolvm/internal/initramfs"
)

//go:embed lab_init.sh
var initScript []byte

// modules the lab VM loads, top-level names; dependencies are resolved from
// modules.dep. kvm_amd because TCG's -cpu max offers SVM, not VMX.
var modules = []string{"virtio_pci", "9pnet_virtio", "9p", "fuse", "overlay", "kvm_amd"}

// buildInitramfs builds (or finds in the cache) the lab VM's initramfs for
// kernel k.
func buildInitramfs(k initramfs.Kernel, cacheDir string) (string, error) {
	var a initramfs.Archive
	if err := a.AddBusybox(""); err != nil {
		return "", err
	}
	mods, err := initramfs.LoadModules(k.Modules)
	if err != nil {
		return "", err
	}
	order, _, err := a.AddModules(mods, modules...)
	if err != nil {
		return "", err
	}
	for _, err := range []error{
		a.AddFile("etc/lab/modules", 0o644, []byte(strings.Join(order, "\n")+"\n")),
		a.AddFile("init", 0o755, initScript),
		a.AddDevice("dev/console", 0o600, true, 5, 1),
		a.AddDir("proc", 0o755),
		a.AddDir("sys", 0o755),
		a.AddDir("tmp", 0o1777),
	} {
		if err != nil {
			return "", err
		}
	}
	return a.Cache(cacheDir, "lab-"+k.Version)
}
