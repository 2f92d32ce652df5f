package guest

import (
	_ "embed"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/smolvm/smolvm/internal/initramfs"
)

// ReadyMarker is the console line /init prints once the modules are loaded
// and the guest is ready; tests and benchmarks wait for it.
const ReadyMarker = "smolvm-init: ready"

// ExitMarkerPrefix starts the console line /init prints after a smolvm.cmd
// script, followed by its exit status: "smolvm-init: exit=0".
const ExitMarkerPrefix = "smolvm-init: exit="

// Modules the default guest loads (top-level names; dependencies are
// resolved from modules.dep). Those built into the kernel are skipped.
var Modules = []string{
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console",
	"vmw_vsock_virtio_transport", "ext4",
}

//go:embed init.sh
var initScript []byte

// bootDir and modulesRoot are variables so that tests can use a fake tree.
var bootDir, modulesRoot = "/boot", "/lib/modules"

// Kernel returns the path of the default guest kernel: the newest installed
// /boot/vmlinuz-*-cloud-amd64.
func Kernel() (string, error) {
	k, err := cloudKernel()
	return k.Image, err
}

func cloudKernel() (initramfs.Kernel, error) {
	k, err := initramfs.NewestKernel(bootDir, modulesRoot, "cloud-amd64", "linux-image-cloud-amd64")
	if err != nil {
		return k, fmt.Errorf("guest: default kernel: %w", err)
	}
	return k, nil
}

// CmdParam returns the kernel parameter that makes the default /init run
// script (with sh -c) instead of a shell, then power off. The script is
// base64-encoded (standard alphabet, padded), so it may hold spaces, quotes
// and newlines; the whole kernel command line is limited to 2047 bytes.
func CmdParam(script string) string {
	return "smolvm.cmd=" + base64.StdEncoding.EncodeToString([]byte(script))
}

// Options choose what goes into the default initramfs. The zero value builds
// the default one.
type Options struct {
	// Kernel whose modules are included; zero means the newest cloud kernel.
	Kernel initramfs.Kernel
	// Busybox is a static busybox on the host; "" means /bin/busybox.
	Busybox string
	// ExtraModules are loaded after Modules.
	ExtraModules []string
	// Agent is the host path of the guest agent binary, installed as
	// /usr/sbin/smolvm-agent and started by /init; "" means none.
	Agent string
	// CacheDir holds built archives; "" means initramfs.CacheDir().
	CacheDir string
}

// Build describes the default initramfs for opts.
func Build(opts Options) (*initramfs.Archive, error) {
	k := opts.Kernel
	if k.Image == "" && k.Modules == "" {
		var err error
		if k, err = cloudKernel(); err != nil {
			return nil, err
		}
	}
	var a initramfs.Archive
	if err := a.AddBusybox(opts.Busybox); err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	mods, err := initramfs.LoadModules(k.Modules)
	if err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	order, _, err := a.AddModules(mods, append(append([]string(nil), Modules...), opts.ExtraModules...)...)
	if err != nil {
		return nil, fmt.Errorf("guest: modules for %s: %w", k.Modules, err)
	}
	list := ""
	if len(order) > 0 {
		list = strings.Join(order, "\n") + "\n"
	}
	for _, err := range []error{
		a.AddFile("init", 0o755, initScript),
		a.AddFile("etc/smolvm/modules", 0o644, []byte(list)),
		a.AddDevice("dev/console", 0o600, true, 5, 1),
		a.AddDir("proc", 0o755),
		a.AddDir("sys", 0o755),
		a.AddDir("run", 0o755),
		a.AddDir("tmp", 0o1777),
		a.AddDir("root", 0o700),
	} {
		if err != nil {
			return nil, fmt.Errorf("guest: %w", err)
		}
	}
	if opts.Agent != "" {
		if err := a.AddHostFile("usr/sbin/smolvm-agent", opts.Agent, 0o755); err != nil {
			return nil, fmt.Errorf("guest: agent: %w", err)
		}
	}
	return &a, nil
}

// Initramfs returns the path of the default initramfs for opts, building it
// into the cache (keyed by a digest of everything in it, written to a temp
// file renamed into place) unless an identical one is there already.
func Initramfs(opts Options) (string, error) {
	a, err := Build(opts)
	if err != nil {
		return "", err
	}
	p, err := a.Cache(opts.CacheDir, "guest")
	if err != nil {
		return "", fmt.Errorf("guest: %w", err)
	}
	return p, nil
}
