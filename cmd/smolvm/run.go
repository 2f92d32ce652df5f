package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/snapshot"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/control"
)

type runFlags struct {
	name, paging, store, net, statsFile string
	publish                             []string
	noPrefetch, waitPrefetch            bool
	console, noStdin, insecure          bool
	readyTimeout                        time.Duration
}

func init() {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run BUNDLE [--name NAME] [--paging uffd|mmap|eager] [--no-prefetch] [-- CMD [ARG...]]",
		Short: "Resume a clone of a saved machine from a .smolmachine bundle",
		Long: `run restores a clone of the machine saved in BUNDLE (smolvm snapshot) instead
of booting it: the saved vCPU, device and memory state are loaded and the
guest continues where it was. Guest memory comes from the bundle's daemon
(smolmount, started when none serves BUNDLE yet and left running for later
runs; smolmount -u stops it):

  uffd   (default) pages are copied in on first touch, through userfaultfd;
         the pages of the bundle's recorded working set are copied in
         before the vCPUs start (--wait-prefetch=false: in the background)
  mmap   a private mapping of the memory file on the daemon's FUSE mount;
         the working set is populated before the vCPUs start (likewise)
  eager  all of memory is read and verified before the guest runs

Every frame is verified before the guest sees it: a bad frame stops the
clone with an error naming it. Each clone is made unique: its agent adds
host entropy and reseeds the guest's RNG, sets a new hostname (NAME) and
machine-id and steps the clock to the host's time; a network device gets a
new MAC. Disk writes go to an overlay in the clone's state dir: BUNDLE is
never modified.

BUNDLE may be oci://REGISTRY/REPO:TAG (smolvm push): run fetches the
artifact's manifest, frame index and saved state only; the daemon is then
smolmount oci://REGISTRY/REPO:TAG (one per reference and pushed manifest),
which fetches each frame the guest touches by an HTTP range request into the
shared cache ($XDG_CACHE_HOME/smolvm) and prefetches the recorded working
set. --insecure allows a plain-HTTP registry.

With CMD, run executes it in the clone through the guest agent, passes its
input and output through, exits with its status and discards the clone.
Without CMD the clone keeps running like smolvm boot --name (console on
stdout; exec, ps, stop and snapshot work on it).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var command []string
			if n := cmd.ArgsLenAtDash(); n >= 0 {
				if n != 1 {
					return fmt.Errorf("run: want BUNDLE [-- CMD...], got %d arguments before --", n)
				}
				command = args[1:]
			} else if len(args) != 1 {
				return fmt.Errorf("run: want BUNDLE [-- CMD...]: put the command after --")
			}
			return runRun(cmd, f, args[0], command)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "name of the clone (default run-XXXXXXXX): its state dir, hostname, and the NAME for exec/ps/stop/snapshot")
	fl.StringVar(&f.paging, "paging", "uffd", "how guest memory is read: uffd, mmap or eager")
	fl.BoolVar(&f.noPrefetch, "no-prefetch", false, "do not prefetch the bundle's working set")
	fl.BoolVar(&f.waitPrefetch, "wait-prefetch", true, "start the vCPUs only once the recorded working set is in (uffd: few faults, and only its pages read; mmap: populated; --wait-prefetch=false races them)")
	fl.StringVar(&f.store, "store", "", "chunk store holding a thin bundle's frames")
	fl.BoolVar(&f.insecure, "insecure", false, "BUNDLE oci://REGISTRY/REPO:TAG over plain HTTP (a local registry)")
	fl.StringVar(&f.net, "net", "", "the clone's network, when it differs from the saved machine's ("+netFlagHelp+")")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, publishFlagHelp)
	fl.BoolVar(&f.console, "console", false, "with CMD: copy the guest's serial console to stderr")
	fl.BoolVarP(&f.noStdin, "no-stdin", "n", false, "with CMD: give the command /dev/null as stdin")
	fl.DurationVar(&f.readyTimeout, "ready-timeout", 60*time.Second, "how long to wait for the restored guest's agent")
	fl.StringVar(&f.statsFile, "stats", "", "write the restore's timeline and memory counts as JSON to this file")
	register(cmd)
}

// runStats is what --stats writes.
type runStats struct {
	Bundle    string               `json:"bundle"`
	Name      string               `json:"name"`
	Paging    snapshot.Paging      `json:"paging"`
	Prefetch  bool                 `json:"prefetch"`
	MemBytes  int64                `json:"mem_bytes"`
	ReadyS    float64              `json:"ready_s"`
	Timeline  snapshot.Timeline    `json:"timeline"`
	Memory    snapshot.MemoryStats `json:"memory"`
	Identity  agent.IdentityResult `json:"identity"`
	Daemon    string               `json:"daemon_mount,omitempty"`
	NewDaemon bool                 `json:"daemon_started"`
	// AgentAttempts is how many connections to the agent were tried.
	AgentAttempts int `json:"agent_attempts"`
}

// runGCMemoryLimit is the Go heap size at which a uffd clone's process
// collects garbage (its own heap is a few MiB; guest RAM is not Go memory).
const runGCMemoryLimit = 512 << 20

func runRun(cmd *cobra.Command, f runFlags, bundle string, command []string) error {
	paging, err := snapshot.ParsePaging(f.paging)
	if err != nil {
		return err
	}
	var netCfg *vmm.NetConfig
	if f.net != "" || len(f.publish) > 0 {
		mode := f.net
		if mode == "" {
			mode = "user"
		}
		if netCfg, err = parseNetFlags(mode, f.publish); err != nil {
			return err
		}
	}
	if !registry.IsRef(bundle) {
		if _, err := os.Stat(bundle); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	name := f.name
	if name == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name = "run-" + hex.EncodeToString(b)
	}
	named := func(err error) error { return fmt.Errorf("%s: %w", name, err) }

	ctl, err := createVMControl(name)
	if err != nil {
		return err
	}
	defer ctl.close() // the clone is discarded with its state dir

	opts := snapshot.RestoreOptions{
		Bundle: bundle, StoreDir: f.store, Insecure: f.insecure, Paging: paging, NoPrefetch: f.noPrefetch, WaitPrefetch: f.waitPrefetch,
		StateDir: ctl.dir.Path, VsockPath: ctl.vsockPath(), Net: netCfg, Log: os.Stderr,
	}
	restoreConsole := func() {}
	if command == nil {
		stdin, restore, err := openConsoleInput()
		if err != nil {
			return err
		}
		defer restore()
		restoreConsole = restore
		opts.Console, opts.ConsoleIn = os.Stdout, stdin
	} else if f.console {
		opts.Console = os.Stderr
	} else {
		opts.Console = io.Discard
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stopSig atomic.Int32
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			stopSig.Store(int32(s.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()

	if paging == snapshot.PagingUFFD {
		// Device goroutines copy guest memory with memmove, where the
		// runtime cannot preempt them: one blocked on a page the daemon
		// will never serve (frame corrupt, daemon dead) would hang a GC's
		// stop-the-world, and with it the code that stops the VM. Collect
		// only near a memory limit instead of on a schedule.
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(runGCMemoryLimit)
	}
	r, err := snapshot.Restore(ctx, opts)
	if err != nil {
		return named(err)
	}
	defer r.Close()
	if !registry.IsRef(r.Bundle) {
		// Snapshots of this clone dedup against its bundle file (a
		// registry bundle is not a file to copy pages from).
		ctl.parent, ctl.parentDigest = r.Bundle, r.Digest.String()
	}
	sc := r.Saved.Config
	info := control.Info{CPUs: sc.CPUs, MemBytes: sc.MemBytes, Kernel: r.Bundle, Forwards: publishedForwards(netCfg)}
	for _, d := range sc.Disks {
		info.Disks = append(info.Disks, d.Name)
	}
	if err := ctl.start(r.Machine, info); err != nil {
		return named(err)
	}

	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	stopAndWait := func() error {
		r.Machine.Stop()
		return <-runErr
	}

	rctx, rcancel := context.WithTimeout(ctx, f.readyTimeout)
	ready, err := r.Ready(rctx, r.Identity(name))
	rcancel()
	if err != nil {
		if rerr := stopAndWait(); rerr != nil {
			return &exitError{code: 2, err: named(rerr)}
		}
		return &exitError{code: 2, err: named(err)}
	}
	ctl.srv.SetReady(control.AgentInfo{Version: agent.Version, Hostname: name, GuestUptime: ready.Identity.Uptime}, time.Now())
	reportReady(name, r, ready, f)

	if command != nil {
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := runInClone(ctx, ctl.vsockPath(), command, f.noStdin)
			done <- result{code, err}
		}()
		var res result
		select {
		case res = <-done:
		case rerr := <-runErr:
			// The VM stopped under the command (a memory fault, its
			// daemon gone, the guest powered off): report that now; the
			// session ends when the deferred Close drops the vsock.
			if rerr == nil {
				rerr = fmt.Errorf("the VM stopped (%v) while the command ran", r.Machine.StopReason())
			}
			return &exitError{code: 2, err: named(rerr)}
		}
		rerr := stopAndWait()
		if ferr := r.FaultErr(); ferr != nil {
			return &exitError{code: 2, err: named(rerr)}
		}
		if res.err != nil {
			return &exitError{code: exitExecFailed, err: named(res.err)}
		}
		if res.code != 0 {
			return &exitError{code: res.code}
		}
		return nil
	}

	rerr := <-runErr
	restoreConsole()
	if rerr != nil {
		return &exitError{code: 2, err: named(rerr)}
	}
	switch reason := r.Machine.StopReason(); reason {
	case vmm.StopPowerOff, vmm.StopReboot:
		fmt.Fprintf(os.Stderr, "smolvm: %s: guest %v\n", name, reason)
		return nil
	default:
		if ctl.stopRequested() {
			fmt.Fprintf(os.Stderr, "smolvm: %s: stopped by request\n", name)
			return nil
		}
		sig := syscall.Signal(stopSig.Load())
		if sig == 0 {
			sig = syscall.SIGINT
		}
		return &exitError{code: 128 + int(sig), err: named(fmt.Errorf("VM stopped (%v)", sig))}
	}
}

// runInClone runs command through the clone's agent with stdio passed
// through and SIGHUP/SIGQUIT relayed (SIGINT and SIGTERM stop the clone,
// which ends the command); it returns the command's exit status.
func runInClone(ctx context.Context, vsock string, command []string, noStdin bool) (int, error) {
	c := agent.Command{Args: command, Stdout: os.Stdout, Stderr: os.Stderr}
	if !noStdin {
		c.Stdin = os.Stdin
	}
	return runThroughAgent(ctx, vsock, c, syscall.SIGHUP, syscall.SIGQUIT)
}

// reportReady prints the restore's figures on stderr and, with --stats,
// writes them as JSON.
func reportReady(name string, r *snapshot.Restored, ready *snapshot.ReadyResult, f runFlags) {
	t := r.Timeline
	m := ready.Memory
	line := fmt.Sprintf("smolvm: %s: restored (%s) ready in %.3f s (opened %.3f s, daemon %.3f s, memory set up %.3f s, state %.3f s, resumed %.3f s, agent connected %.3f s after %d attempts); %s of %s RAM read",
		name, r.Paging, t.Ready.Seconds(), t.Opened.Seconds(), t.Daemon.Seconds(), t.Memory.Seconds(), t.Restored.Seconds(), t.Resumed.Seconds(), t.Connected.Seconds(), ready.Attempts,
		humanBytes(m.BytesRead), humanBytes(r.Saved.Config.MemBytes))
	if p := m.Pager; p != nil {
		line += fmt.Sprintf(", %d faults, %d pages prefetched", p.Faults, p.PrefetchedPages)
	}
	if u := m.PrefetchUse; u != nil {
		line += fmt.Sprintf("; prefetched pages used by the guest %d, wasted %d (zero pages, not known: %d; absent %d)", u.Used, u.Wasted, u.Zero, u.Absent)
	} else if m.PrefetchUseError != "" {
		line += "; prefetch use " + m.PrefetchUseError
	}
	fmt.Fprintln(os.Stderr, line)
	for _, e := range ready.Identity.Errors {
		fmt.Fprintf(os.Stderr, "smolvm: %s: warning: clone identity: %s\n", name, e)
	}
	if f.statsFile == "" {
		return
	}
	st := runStats{
		Bundle: r.Bundle, Name: name, Paging: r.Paging, Prefetch: !f.noPrefetch, MemBytes: r.Saved.Config.MemBytes,
		ReadyS: t.Ready.Seconds(), Timeline: t, Memory: m, Identity: ready.Identity, AgentAttempts: ready.Attempts,
	}
	if r.Daemon != nil {
		st.Daemon, st.NewDaemon = r.Daemon.MountPoint, r.Daemon.Started
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := f.statsFile + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
		err = os.Rename(tmp, f.statsFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "smolvm: %s: --stats: %v\n", name, err)
		}
	}
}
