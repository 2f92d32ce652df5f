package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Method names, in the order they are run and shown.
const (
	MethodBoot         = "boot"          // smolvm boot to the agent's ready notification
	MethodEager        = "eager"         // smolvm run --paging eager
	MethodUffd         = "uffd"          // smolvm run --paging uffd --no-prefetch
	MethodMmap         = "mmap"          // smolvm run --paging mmap --no-prefetch
	MethodUffdPrefetch = "uffd-prefetch" // smolvm run --paging uffd (prefetch of the recorded working set)
	// smolvm run --paging uffd --wait-prefetch=false: the vCPUs start at
	// once, racing the prefetch
	MethodUffdPrefetchAsync = "uffd-prefetch-async"
	MethodQEMUBoot          = "qemu-boot"    // QEMU/KVM boot to the serial ready marker
	MethodQEMURestore       = "qemu-restore" // QEMU -incoming "exec:cat FILE" to a serial echo
)

// Guest is the one guest every method starts, at one memory size.
type Guest struct {
	Smolvm   string // smolvm executable
	QEMU     string // qemu-system-x86_64 ("" when not installed)
	Kernel   string
	Initrd   string // the default initramfs with the guest agent
	Cmdline  string
	CPUs     int
	MemBytes int64
	Work     string    // scratch directory for snapshots and state dirs
	RunDir   string    // SMOLVM_RUN_DIR of the VMs the bench starts
	Log      io.Writer // progress and child output on failure
	// ReadyTimeout bounds one start-to-ready wait.
	ReadyTimeout time.Duration
}

// Instance is one running VM a method started; it is ready when returned.
type Instance struct {
	Ready   time.Duration // process start to ready
	PIDs    []int         // the VMM processes (measured per instance)
	Shared  []int         // processes shared by clones (a bundle's daemon), measured once
	RAMRead int64         // guest RAM bytes read before ready, or Unknown
	Faults  int64         // faults served before ready, or Unknown
	// Prefetch is how the guest used the pages prefetched before its
	// vCPUs ran, at ready (nil: not measured).
	Prefetch *PrefetchUse
	Stop     func() error  // ends the VM and waits for it (bounded)
	Output   func() string // the last of the VMM's output, for errors (may be nil)
	Phases   []Phase       // where the time to ready went, when the VMM says
}

// prepared is what a method's runs start from at one memory size: a
// snapshot bundle or a migration stream. Methods with the same prepareKey
// share one.
type prepared struct {
	Path    string
	Size    int64
	cleanup func()
}

// Method is one way to get the guest to ready.
type Method struct {
	Name string
	Desc string
	// check says why the method cannot run here (nil: it can).
	check func(g *Guest) error
	// prepareKey names the preparation shared by methods ("" for none).
	prepareKey string
	prepare    func(ctx context.Context, g *Guest) (*prepared, error)
	// size is what the method starts from when it has no preparation.
	size  func(g *Guest) int64
	start func(ctx context.Context, g *Guest, p *prepared, id string) (*Instance, error)
}

// Methods lists every method in run order.
func Methods() []Method {
	return []Method{
		smolvmBoot(),
		smolvmRestore(MethodEager, "restore, all guest RAM read before the vCPUs start", "--paging", "eager", "--no-prefetch"),
		smolvmRestore(MethodUffd, "lazy restore, guest RAM faulted in by userfaultfd, no prefetch", "--paging", "uffd", "--no-prefetch"),
		smolvmRestore(MethodMmap, "lazy restore, guest RAM mapped MAP_PRIVATE from the bundle's FUSE mount", "--paging", "mmap", "--no-prefetch"),
		smolvmRestore(MethodUffdPrefetch, "lazy restore by userfaultfd with the recorded working set prefetched before the vCPUs start (the default)", "--paging", "uffd"),
		smolvmRestore(MethodUffdPrefetchAsync, "lazy restore by userfaultfd, the vCPUs started at once while the working set is prefetched", "--paging", "uffd", "--wait-prefetch=false"),
		qemuBoot(),
		qemuRestore(),
	}
}

func methodIndex(name string) int {
	for i, m := range Methods() {
		if m.Name == name {
			return i
		}
	}
	return len(Methods())
}

// SelectMethods picks methods from a comma-separated list of names ("all"
// or "" for every one), in run order; an unknown name is an error naming the
// known ones.
func SelectMethods(list string) ([]Method, error) {
	all := Methods()
	if strings.TrimSpace(list) == "" || strings.TrimSpace(list) == "all" {
		return all, nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if methodIndex(n) == len(all) {
			return nil, fmt.Errorf("bench: unknown method %q (known: %s)", n, strings.Join(MethodNames(), ", "))
		}
		want[n] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("bench: no method named in %q", list)
	}
	var out []Method
	for _, m := range all {
		if want[m.Name] {
			out = append(out, m)
		}
	}
	return out, nil
}

// MethodNames lists the method names in run order.
func MethodNames() []string {
	var names []string
	for _, m := range Methods() {
		names = append(names, m.Name)
	}
	return names
}
