package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options say what to measure.
type Options struct {
	Methods []Method
	Mems    []int64 // guest RAM sizes, bytes
	Runs    int     // runs per method and size (>= 1)
	Clones  int     // > 1: also start this many instances at once and report memory per clone
	CPUs    int     // guest vCPUs

	Smolvm, QEMU    string // executables (QEMU "" when not installed)
	Kernel, Initrd  string // the guest (Initrd carries the guest agent)
	Cmdline         string
	DropCaches      bool          // echo 3 > /proc/sys/vm/drop_caches before every run (root; the lab only)
	Accel           string        // "nested TCG" or "hardware KVM"
	Command         string        // recorded in the report
	ReadyTimeout    time.Duration // one start-to-ready wait; 0 means 5 minutes
	Log             io.Writer     // progress lines; nil means none
	Notes           []string      // caveats added to the report
	UnmatchedMethod []string
}

// Run measures every method at every memory size. A method that cannot run
// here is listed in Env.Skipped; one that fails at a size gets a Result
// with Error set; neither stops the others. err is for the harness itself
// (its scratch directory).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Runs < 1 {
		o.Runs = 1
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	log := o.Log
	if log == nil {
		log = io.Discard
	}
	work, err := os.MkdirTemp("", "smolvm-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	runDir := filepath.Join(work, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer stopDaemons(runDir)

	rep := &Report{Env: Env{
		Accel: o.Accel, PageCache: "warm", Host: hostDescription(),
		Guest:   fmt.Sprintf("%s, %s (%d vCPUs), cmdline %q", filepath.Base(o.Kernel), filepath.Base(o.Initrd), o.CPUs, o.Cmdline),
		Command: o.Command, Date: time.Now().UTC(), Runs: o.Runs, Clones: o.Clones,
		Notes: append([]string(nil), o.Notes...), Unmatched: o.UnmatchedMethod,
	}}
	if o.DropCaches {
		rep.Env.PageCache = "cold"
		rep.Env.Notes = append(rep.Env.Notes, "page cache dropped (echo 3 > /proc/sys/vm/drop_caches) before every run")
	} else {
		rep.Env.Notes = append(rep.Env.Notes, "page cache warm: files read by earlier runs may be cached")
	}

	var methods []Method
	for _, m := range o.Methods {
		g := &Guest{Smolvm: o.Smolvm, QEMU: o.QEMU}
		if err := m.check(g); err != nil {
			rep.Env.Skipped = append(rep.Env.Skipped, Skipped{Method: m.Name, Reason: strings.TrimPrefix(err.Error(), errSkip.Error()+": ")})
			fmt.Fprintf(log, "bench: %s not run: %v\n", m.Name, err)
			continue
		}
		methods = append(methods, m)
	}

	for _, mem := range o.Mems {
		g := &Guest{
			Smolvm: o.Smolvm, QEMU: o.QEMU, Kernel: o.Kernel, Initrd: o.Initrd, Cmdline: o.Cmdline,
			CPUs: o.CPUs, MemBytes: mem, Work: work, RunDir: runDir, Log: log, ReadyTimeout: o.ReadyTimeout,
		}
		preps := map[string]*prepared{}
		prepErrs := map[string]error{}
		results := make([]Result, len(methods))
		ready := make([]*prepared, len(methods))
		for j, m := range methods {
			results[j], ready[j] = setUp(ctx, g, m, preps, prepErrs, log)
		}
		// Runs go round-robin over the methods, so that a change in the
		// host's load during the bench touches every method alike.
		for i := 0; i < o.Runs; i++ {
			for j, m := range methods {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if results[j].Error == "" {
					runOnce(ctx, o, g, m, ready[j], i, &results[j], log)
				}
			}
		}
		for j, m := range methods {
			r := &results[j]
			if r.Error != "" {
				continue
			}
			r.finish()
			if o.Clones > 1 {
				c, err := measureClones(ctx, g, m, ready[j], o.Clones)
				if err != nil {
					fmt.Fprintf(log, "bench: %s %s, %d clones: %v\n", sizeString(g.MemBytes), m.Name, o.Clones, err)
				} else {
					r.Clones = c
				}
			}
		}
		rep.Results = append(rep.Results, results...)
		for _, p := range preps {
			if p.cleanup != nil {
				p.cleanup()
			}
		}
	}
	rep.sortResults()
	rep.setRatios()
	return rep, nil
}

// setUp makes what m's runs start from (shared by methods with the same
// prepareKey) and the Result its runs fill in; a failed preparation is
// the Result's Error.
func setUp(ctx context.Context, g *Guest, m Method, preps map[string]*prepared, prepErrs map[string]error, log io.Writer) (Result, *prepared) {
	res := Result{Method: m.Name, MemBytes: g.MemBytes, SizeBytes: Unknown, RAMReadBytes: Unknown, Faults: Unknown, PrefetchUsed: Unknown, PrefetchWasted: Unknown, RSSBytes: Unknown, PSSBytes: Unknown}
	if m.prepare == nil {
		if m.size != nil {
			res.SizeBytes = m.size(g)
		}
		return res, nil
	}
	if err, failed := prepErrs[m.prepareKey]; failed {
		res.Error = err.Error()
		return res, nil
	}
	p := preps[m.prepareKey]
	if p == nil {
		fmt.Fprintf(log, "bench: %s %s: preparing (%s)\n", sizeString(g.MemBytes), m.Name, m.prepareKey)
		var err error
		if p, err = m.prepare(ctx, g); err != nil {
			err = fmt.Errorf("preparing %s: %w", m.prepareKey, err)
			prepErrs[m.prepareKey] = err
			res.Error = err.Error()
			fmt.Fprintf(log, "bench: %s %s: %v\n", sizeString(g.MemBytes), m.Name, err)
			return res, nil
		}
		preps[m.prepareKey] = p
	}
	res.SizeBytes = p.Size
	return res, p
}

// runOnce starts m once, measures it at ready, stops it and adds the
// sample to res (or sets res.Error).
func runOnce(ctx context.Context, o Options, g *Guest, m Method, p *prepared, i int, res *Result, log io.Writer) {
	if o.DropCaches {
		if err := dropCaches(); err != nil {
			res.Error = err.Error()
			return
		}
	}
	in, err := m.start(ctx, g, p, fmt.Sprint(i))
	if err != nil {
		res.Error = err.Error()
		fmt.Fprintf(log, "bench: %s %s run %d: %v\n", sizeString(g.MemBytes), m.Name, i+1, err)
		return
	}
	s := Sample{ReadySeconds: in.Ready.Seconds(), RAMReadBytes: in.RAMRead, Faults: in.Faults, Prefetch: in.Prefetch, RSSBytes: Unknown, PSSBytes: Unknown, Phases: in.Phases}
	if mem, err := sumMemory(in.PIDs); err == nil {
		s.RSSBytes, s.PSSBytes = mem.RSS, mem.PSS
	}
	if err := in.Stop(); err != nil {
		fmt.Fprintf(log, "bench: %v\n", err)
	}
	res.Samples = append(res.Samples, s)
	fmt.Fprintf(log, "bench: %s %s run %d: ready in %.3f s\n", sizeString(g.MemBytes), m.Name, i+1, s.ReadySeconds)
}

// measureClones starts n instances of m at once and divides their total
// memory (each VMM, plus the shared daemons counted once) by n.
func measureClones(ctx context.Context, g *Guest, m Method, p *prepared, n int) (*Clones, error) {
	var ins []*Instance
	defer func() {
		for _, in := range ins {
			_ = in.Stop()
		}
	}()
	for i := 0; i < n; i++ {
		in, err := m.start(ctx, g, p, fmt.Sprintf("clone%d", i))
		if err != nil {
			return nil, fmt.Errorf("clone %d: %w", i+1, err)
		}
		ins = append(ins, in)
	}
	var pids []int
	shared := map[int]bool{}
	for _, in := range ins {
		pids = append(pids, in.PIDs...)
		for _, s := range in.Shared {
			shared[s] = true
		}
	}
	for pid := range shared {
		pids = append(pids, pid)
	}
	total, err := sumMemory(pids)
	if err != nil {
		return nil, err
	}
	return &Clones{N: n, PSSPerClone: total.PSS / int64(n), RSSPerClone: total.RSS / int64(n)}, nil
}

// dropCaches writes back dirty pages and drops the page cache, dentries
// and inodes (root only).
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		return fmt.Errorf("bench: dropping caches: %w", err)
	}
	return nil
}

// hostDescription is the CPU model, the number of CPUs and the kernel.
func hostDescription() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	kernel := "unknown kernel"
	if unix.Uname(&u) == nil {
		kernel = "Linux " + unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%s, %d CPUs, %s", model, runtime.NumCPU(), kernel)
}
