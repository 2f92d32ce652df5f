package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/disk"
	"github.com/smolvm/smolvm/vmm/network"
)

// Paging is how a restored machine gets its memory.
type Paging string

// Paging modes.
const (
	// PagingUFFD: anonymous memory registered with a userfaultfd whose
	// faults the bundle's daemon serves, frame by frame, prefetching the
	// bundle's working set in the background (the default).
	PagingUFFD Paging = "uffd"
	// PagingMmap: a MAP_PRIVATE mapping of the memory file on the
	// daemon's FUSE mount; clones share clean pages in the page cache.
	PagingMmap Paging = "mmap"
	// PagingEager: every page read and verified through chunkstore into
	// anonymous memory before the guest runs.
	PagingEager Paging = "eager"
)

// ParsePaging reads --paging ("" is uffd).
func ParsePaging(s string) (Paging, error) {
	switch p := Paging(s); p {
	case "":
		return PagingUFFD, nil
	case PagingUFFD, PagingMmap, PagingEager:
		return p, nil
	}
	return "", fmt.Errorf("snapshot: paging %q: want uffd, mmap or eager", s)
}

// Sentinel errors of Restore, for errors.Is.
var (
	// ErrNoState: the bundle holds no saved machine (boot it instead).
	ErrNoState = errors.New("snapshot: bundle has no saved machine state")
	// ErrBundle: the bundle does not describe the saved machine
	// consistently (sizes, artifacts).
	ErrBundle = errors.New("snapshot: inconsistent bundle")
)

// RestoreOptions say how to restore a bundle.
type RestoreOptions struct {
	// Bundle is the .smolmachine path, or oci://REGISTRY/REPO:TAG served
	// lazily from a registry (see registry.Open); StoreDir is a thin
	// bundle's chunk store.
	Bundle, StoreDir string
	// Insecure: an oci:// Bundle's registry speaks plain HTTP.
	Insecure bool
	Paging   Paging
	// NoPrefetch skips prefetching the bundle's working set.
	NoPrefetch bool
	// Record makes the daemon record the working set (uffd only) until
	// Ready.
	Record bool
	// WaitPrefetch (uffd) holds the vCPUs until the daemon has copied the
	// whole working set in (bounded by PrefetchTimeout, default 30 s):
	// fewer faults, each of which costs a round trip to the daemon.
	WaitPrefetch    bool
	PrefetchTimeout time.Duration
	// StateDir holds the clone's disk overlays (disk-NAME.overlay);
	// required when the bundle has disks.
	StateDir string
	// VsockPath is the vsock device's unix socket; required when the saved
	// machine had one (it is the agent's transport).
	VsockPath string
	// Console and ConsoleIn are the serial console, Log the devices'
	// diagnostics (vmm.Config).
	Console   io.Writer
	ConsoleIn io.Reader
	Log       io.Writer
	// Net, when set, replaces the saved machine's network (tap needs it:
	// the bundle records the mode, not the host's interface). A clone
	// always gets a new MAC unless Net sets one.
	Net *vmm.NetConfig
	// Daemon tunes starting the bundle's daemon.
	Daemon DaemonOptions
}

// Timeline is when each restore step ended, since Start.
type Timeline struct {
	Start    time.Time     `json:"start"`
	Opened   time.Duration `json:"opened_ns"`   // bundle opened, state decoded, host checked
	Daemon   time.Duration `json:"daemon_ns"`   // bundle daemon found or started (uffd, eager: the machine built meanwhile)
	Memory   time.Duration `json:"memory_ns"`   // guest memory set up (eager: all of it read)
	Restored time.Duration `json:"restored_ns"` // machine state loaded
	Resumed  time.Duration `json:"resumed_ns"`  // vCPUs started
	// Connected: the first connection to the guest agent succeeded.
	Connected time.Duration `json:"connected_ns"`
	Ready     time.Duration `json:"ready_ns"` // the agent answered (Ready)
}

func (t *Timeline) mark(d *time.Duration) { *d = time.Since(t.Start) }

// Restored is a machine restored from a bundle, not yet running. Run runs
// it; Close releases it (and its memory's daemon registration).
type Restored struct {
	Machine  *vmm.Machine
	Saved    *Saved
	Bundle   string        // absolute path
	Digest   format.Digest // manifest digest
	Daemon   *Daemon       // nil for an eager restore without disks
	Paging   Paging
	Timeline Timeline

	opts   RestoreOptions
	bundle *chunkstore.Bundle
	// lazy is the registry bundle of an oci:// restore (bundle is its
	// Bundle); nil for a file.
	lazy   *registry.Lazy
	client *pager.Client
	uffd   int
	// eagerBytes: bytes an eager restore read (its data pages).
	eagerBytes int64
	// fsBefore: the daemon's FUSE bytes read before an mmap restore.
	fsBefore int64
	// prefetchComplete: the working set was in before the vCPUs ran;
	// access measures its use from then (restore_access.go).
	prefetchComplete bool
	access           *pager.AccessTracker
	accessErr        error

	populate   sync.WaitGroup
	stopFill   context.CancelFunc
	uffdOnce   sync.Once
	mu         sync.Mutex
	faultErr   error
	watchOnce  sync.Once
	watchStop  chan struct{}
	watchDone  chan struct{}
	closedOnce sync.Once
}

// Restore builds a machine from the bundle at opts.Bundle: it opens the
// bundle, decodes and checks its state against this host, finds or starts
// its daemon, sets up guest memory for opts.Paging, builds the machine's
// devices as saved (disks from the daemon's mount under a copy-on-write
// overlay in opts.StateDir) and loads the saved state. The machine has not
// run yet: call Run. On error nothing is left open (a daemon it started
// keeps running, to serve later runs).
func Restore(ctx context.Context, opts RestoreOptions) (_ *Restored, err error) {
	r := &Restored{Paging: opts.Paging, opts: opts, uffd: -1, Timeline: Timeline{Start: time.Now()}}
	if r.Paging == "" {
		r.Paging = PagingUFFD
	}
	if _, err := ParsePaging(string(r.Paging)); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if registry.IsRef(opts.Bundle) {
		r.Bundle = opts.Bundle
	} else if r.Bundle, err = filepath.Abs(opts.Bundle); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	r.Timeline.mark(&r.Timeline.Opened)
	if err := r.startMachine(ctx); err != nil {
		return nil, err
	}
	if err := r.setupMemory(ctx); err != nil {
		return nil, err
	}
	r.Timeline.mark(&r.Timeline.Memory)
	if err := r.Machine.RestoreState(&r.Saved.Machine); err != nil {
		return nil, fmt.Errorf("snapshot: restore %s: %w", r.Bundle, err)
	}
	if ferr := r.FaultErr(); ferr != nil {
		return nil, fmt.Errorf("snapshot: %s: guest memory unavailable: %w", r.Bundle, ferr)
	}
	r.Timeline.mark(&r.Timeline.Restored)
	return r, nil
}

// startMachine finds or starts the bundle's daemon and builds the machine.
// A machine whose setup needs nothing from the daemon's mount (uffd or
// eager paging, no disks) is built while a new daemon starts: both take
// a while, and neither waits for the other.
func (r *Restored) startMachine(ctx context.Context) error {
	needDaemon := r.Paging != PagingEager || len(r.Saved.Config.Disks) > 0
	if !needDaemon {
		r.Timeline.mark(&r.Timeline.Daemon)
		return r.newMachine("")
	}
	dopts := r.opts.Daemon
	dopts.Insecure = dopts.Insecure || r.opts.Insecure
	type started struct {
		d   *Daemon
		err error
	}
	dch := make(chan started, 1)
	go func() {
		d, err := EnsureDaemon(ctx, r.Bundle, r.Digest, dopts)
		dch <- started{d, err}
	}()
	wait := func() error {
		st := <-dch
		r.Daemon = st.d
		r.Timeline.mark(&r.Timeline.Daemon)
		return st.err
	}
	if r.Paging == PagingMmap || len(r.Saved.Config.Disks) > 0 {
		if err := wait(); err != nil {
			return err
		}
		return r.newMachine(r.Daemon.MountPoint)
	}
	mnt, err := DaemonMountPoint(r.Bundle, r.Digest)
	if err != nil {
		return errors.Join(err, wait())
	}
	merr := r.newMachine(mnt)
	if err := wait(); err != nil || merr != nil {
		return errors.Join(merr, err)
	}
	if r.Daemon.MountPoint != mnt {
		return fmt.Errorf("%w: %s: daemon mounted at %s, expected %s", ErrDaemon, r.Bundle, r.Daemon.MountPoint, mnt)
	}
	return nil
}

// newMachine builds the machine of the saved config with the daemon's
// mount at mnt ("" without a daemon).
func (r *Restored) newMachine(mnt string) error {
	cfg, err := r.machineConfig(mnt)
	if err != nil {
		return err
	}
	if r.Machine, err = vmm.NewRestore(cfg); err != nil {
		return fmt.Errorf("snapshot: restore %s: %w", r.Bundle, err)
	}
	return nil
}

// open opens the bundle (an oci:// one fetches the manifest, TOC and the
// state's frames only), decodes its state and checks it against the
// manifest and this host's CPU.
func (r *Restored) open(ctx context.Context) error {
	if registry.IsRef(r.Bundle) {
		lz, err := registry.Open(ctx, r.Bundle, registry.LazyOptions{Remote: registry.Remote{Insecure: r.opts.Insecure}})
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		r.lazy, r.bundle = lz, lz.Bundle
	} else {
		b, err := chunkstore.Open(r.Bundle, chunkstore.Options{StoreDir: r.opts.StoreDir})
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		r.bundle = b
	}
	b := r.bundle
	r.Digest = b.Format().ManifestDigest()
	man := b.Manifest()
	if man.State == "" {
		return fmt.Errorf("%w: %s", ErrNoState, r.Bundle)
	}
	st, err := b.Image(man.State)
	if err != nil {
		return fmt.Errorf("snapshot: %s: %w", r.Bundle, err)
	}
	raw := make([]byte, st.Size())
	if _, err := st.ReadAt(raw, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("snapshot: %s: state: %w", r.Bundle, err)
	}
	if r.Saved, err = DecodeState(bytes.NewReader(raw)); err != nil {
		return fmt.Errorf("%s: %w", r.Bundle, err)
	}
	mem, err := b.Image(format.ArtifactMemory)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBundle, r.Bundle, err)
	}
	if mem.Size() != r.Saved.Config.MemBytes {
		return fmt.Errorf("%w: %s: memory artifact is %d bytes, the saved machine has %d", ErrBundle, r.Bundle, mem.Size(), r.Saved.Config.MemBytes)
	}
	for _, d := range r.Saved.Config.Disks {
		if _, err := b.Image(format.DiskPrefix + d.Name); err != nil {
			return fmt.Errorf("%w: %s: disk %s: %v", ErrBundle, r.Bundle, d.Name, err)
		}
	}
	host, err := vmm.HostCPUID()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := CheckHost(r.Saved, host); err != nil {
		return fmt.Errorf("%s: %w", r.Bundle, err)
	}
	return nil
}

// machineConfig is the vmm.Config of the saved machine's shape, with this
// clone's console, sockets, overlays and memory backing; mnt is the
// daemon's mount ("" without one).
func (r *Restored) machineConfig(mnt string) (vmm.Config, error) {
	sc := r.Saved.Config
	cfg := vmm.Config{
		CPUs: sc.CPUs, MemBytes: sc.MemBytes, Cmdline: sc.Cmdline,
		Console: r.opts.Console, ConsoleIn: r.opts.ConsoleIn, Log: r.opts.Log,
	}
	if sc.Vsock {
		if r.opts.VsockPath == "" {
			return cfg, errors.New("snapshot: the saved machine has a vsock device: the restore needs a vsock socket path (a state dir)")
		}
		cfg.VsockPath = r.opts.VsockPath
	}
	man := r.bundle.Manifest()
	if mnt != "" {
		// A snapshot of this clone packs kernel and initrd from here.
		for _, a := range man.Artifacts {
			switch a.Name {
			case format.ArtifactKernel:
				cfg.Kernel = filepath.Join(mnt, a.Name)
			case format.ArtifactInitrd:
				cfg.Initrd = filepath.Join(mnt, a.Name)
			}
		}
	}
	for _, d := range sc.Disks {
		if r.opts.StateDir == "" {
			return cfg, fmt.Errorf("snapshot: disk %s needs a state dir for its copy-on-write overlay", d.Name)
		}
		dc := vmm.DiskConfig{
			Name: d.Name, Path: filepath.Join(mnt, format.DiskPrefix+d.Name),
			Mode: disk.ModeCOW, OverlayPath: filepath.Join(r.opts.StateDir, "disk-"+d.Name+".overlay"),
		}
		if d.ReadOnly {
			dc.Mode, dc.OverlayPath = disk.ModeRO, ""
		}
		cfg.Disks = append(cfg.Disks, dc)
	}
	switch {
	case r.opts.Net != nil && sc.Net == nil:
		return cfg, errors.New("snapshot: the saved machine has no network device: a clone cannot get one")
	case r.opts.Net != nil:
		cfg.Net = r.opts.Net
	case sc.Net != nil:
		mode, err := network.ParseMode(sc.Net.Mode)
		if err != nil || mode.Kind == "tap" {
			return cfg, fmt.Errorf("snapshot: the saved machine's network is %q: give the clone's network explicitly (--net)", sc.Net.Mode)
		}
		cfg.Net = &vmm.NetConfig{Mode: mode} // zero MAC: a new random one
	}
	if r.Paging == PagingMmap {
		cfg.Memory.File = filepath.Join(mnt, format.ArtifactMemory)
	}
	return cfg, nil
}

// Close stops background work, leaves the daemon (closing this VM's
// registration and userfaultfd only after the machine is closed) and
// closes the bundle. Call it after Run returned (or instead of Run).
func (r *Restored) Close() error {
	var errs []error
	r.closedOnce.Do(func() {
		if r.stopFill != nil {
			r.stopFill()
		}
		r.stopWatch()
		r.populate.Wait()
		if r.Machine != nil {
			errs = append(errs, r.Machine.Close())
		}
		r.releaseMemory()
		errs = append(errs, r.closeAccess())
		switch {
		case r.lazy != nil:
			errs = append(errs, r.lazy.Close())
		case r.bundle != nil:
			errs = append(errs, r.bundle.Close())
		}
	})
	return errors.Join(errs...)
}

// releaseMemory ends the daemon registration and closes the userfaultfd:
// after that nobody serves missing pages and the kernel zero-fills them,
// so it runs only once the guest can no longer run (stopped or failed).
func (r *Restored) releaseMemory() {
	r.uffdOnce.Do(func() {
		if r.client != nil {
			r.client.Close()
		}
		if r.uffd >= 0 {
			unix.Close(r.uffd)
		}
	})
}
