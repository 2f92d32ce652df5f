package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/bench"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
)

// benchCmdline is the guest kernel command line of every bench method.
const benchCmdline = "console=ttyS0 panic=-1 quiet"

type benchFlags struct {
	methods, mems, plot, kernel, initrd, jsonOut, from string
	runs, clones, cpus                                 int
	asJSON, dropCaches                                 bool
	timeout                                            time.Duration
}

func init() {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure cold starts: boot, restore (eager, uffd, mmap, prefetch) and QEMU, on one guest",
		Long: `bench starts the same guest (kernel, initramfs with the agent, vCPUs, RAM) in
every way smolvm and QEMU can and reports, per method and RAM size: time to
ready (median, min, max over --runs), its ratio to a full boot, guest RAM
read before ready, faults, the VMM's RSS and PSS at ready and what the
method starts from (kernel+initramfs, bundle, migration stream).

Methods: ` + strings.Join(bench.MethodNames(), ", ") + `. Ready is the guest
agent's notification for smolvm and a serial console line for QEMU.

Without hardware KVM it runs itself inside the KVM lab VM (nested KVM on
QEMU's TCG: "nested TCG" in every output; 10-50x slower than hardware) and
drops the page cache before every run there (cold); elsewhere the cache is
warm unless --drop-caches.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.methods, "methods", "all", "comma-separated methods to run")
	fl.StringVar(&f.mems, "mem", "256M", "guest RAM sizes, comma-separated (e.g. 256M,1G)")
	fl.IntVar(&f.runs, "runs", 3, "runs per method and RAM size")
	fl.IntVar(&f.clones, "clones", 0, "also start N instances of each method at once and report memory per clone (N >= 2)")
	fl.IntVar(&f.cpus, "cpus", 1, "guest vCPUs")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.StringVar(&f.plot, "plot", "", "also draw the ready times to FILE.svg or FILE.png")
	fl.BoolVar(&f.dropCaches, "drop-caches", false, "drop the page cache before every run (root; always on inside the lab)")
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel (default: the default guest's)")
	fl.StringVar(&f.initrd, "initrd", "", "guest initramfs (default: the default guest's, with the agent)")
	fl.DurationVar(&f.timeout, "lab-timeout", 40*time.Minute, "limit for the whole run inside the lab")
	fl.StringVar(&f.jsonOut, "json-out", "", "write the JSON report to this file (used inside the lab)")
	_ = fl.MarkHidden("json-out")
	fl.StringVar(&f.from, "report", "", "show (and --plot) a report saved with --json instead of measuring")
	register(cmd)
}

// parseMems reads --mem: sizes of at least 64 MiB, whole MiB.
func parseMems(s string) ([]int64, error) {
	var out []int64
	seen := map[int64]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := parseSize(part)
		if err != nil {
			return nil, fmt.Errorf("--mem: %w", err)
		}
		if n < 64<<20 || n%(1<<20) != 0 {
			return nil, fmt.Errorf("--mem: %s: want whole MiB, at least 64M", part)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--mem: no size given")
	}
	return out, nil
}

func (f benchFlags) validate() ([]bench.Method, []int64, error) {
	methods, err := bench.SelectMethods(f.methods)
	if err != nil {
		return nil, nil, fmt.Errorf("--methods: %w", err)
	}
	mems, err := parseMems(f.mems)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case f.runs < 1:
		return nil, nil, fmt.Errorf("--runs: want at least 1, got %d", f.runs)
	case f.clones == 1 || f.clones < 0:
		return nil, nil, fmt.Errorf("--clones: want 0 (off) or at least 2, got %d", f.clones)
	case f.cpus < 1:
		return nil, nil, fmt.Errorf("--cpus: want at least 1, got %d", f.cpus)
	}
	if f.plot != "" && !strings.HasSuffix(f.plot, ".svg") && !strings.HasSuffix(f.plot, ".png") {
		return nil, nil, fmt.Errorf("--plot: %s: want a .svg or .png file", f.plot)
	}
	return methods, mems, nil
}

// innerArgs are the arguments the bench is re-invoked with inside the lab.
func (f benchFlags) innerArgs(kernel, initrd string) []string {
	return []string{"bench", "--methods", f.methods, "--mem", f.mems, "--runs", strconv.Itoa(f.runs),
		"--clones", strconv.Itoa(f.clones), "--cpus", strconv.Itoa(f.cpus), "--kernel", kernel, "--initrd", initrd}
}

func runBench(f benchFlags) error {
	methods, mems, err := f.validate()
	if err != nil {
		return err
	}
	if f.from != "" {
		b, err := os.ReadFile(f.from)
		if err != nil {
			return err
		}
		rep, err := bench.DecodeReport(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f.from, err)
		}
		return f.output(rep)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.kernel == "" {
		if f.kernel, err = guest.Kernel(); err != nil {
			return err
		}
	}
	if f.initrd == "" {
		agentBin, err := guest.DefaultAgent()
		if err != nil {
			return err
		}
		if agentBin == "" {
			return fmt.Errorf("bench: no guest agent (smolvm-agent next to smolvm, or $SMOLVM_AGENT): ready could not be measured; run make build")
		}
		if f.initrd, err = guest.Initramfs(guest.Options{Agent: agentBin}); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	var rep *bench.Report
	if kvmtest.Check() != nil && !kvmtest.InLab() {
		fmt.Fprintf(os.Stderr, "smolvm bench: no hardware KVM here (%v): running inside the KVM lab VM (nested TCG)\n", kvmtest.Check())
		var maxMem int64
		for _, m := range mems {
			maxMem = max(maxMem, m)
		}
		labMB := 3072 + int(maxMem>>20)*(2+f.clones)
		rep, err = bench.RunInLab(ctx, bench.LabOptions{
			Args: f.innerArgs(f.kernel, f.initrd), Smolvm: self, MemMB: min(labMB, 16384), Timeout: f.timeout, Log: os.Stderr,
		})
		if err != nil {
			return err
		}
		rep.Env.Command = "smolvm " + strings.Join(os.Args[1:], " ")
	} else {
		qemu, _ := exec.LookPath("qemu-system-x86_64")
		drop := f.dropCaches || (kvmtest.InLab() && os.Geteuid() == 0)
		var notes []string
		if kvmtest.InLab() {
			notes = append(notes, "run inside the KVM lab VM: its files (bundles, migration streams) live in the lab's RAM (tmpfs), which dropping caches does not evict")
		}
		rep, err = bench.Run(ctx, bench.Options{
			Methods: methods, Mems: mems, Runs: f.runs, Clones: f.clones, CPUs: f.cpus,
			Smolvm: self, QEMU: qemu, Kernel: f.kernel, Initrd: f.initrd, Cmdline: benchCmdline,
			DropCaches: drop, Accel: kvmtest.Label(), Command: "smolvm " + strings.Join(os.Args[1:], " "),
			Log: os.Stderr, Notes: notes,
		})
		if err != nil {
			return err
		}
		if f.jsonOut != "" {
			return writeReportFile(f.jsonOut, rep)
		}
	}
	return f.output(rep)
}

// output draws the plot (with --plot) and prints rep as JSON or a table.
func (f benchFlags) output(rep *bench.Report) error {
	if f.plot != "" {
		if err := bench.WritePlot(f.plot, rep); err != nil {
			return err
		}
	}
	var err error
	if f.asJSON {
		err = bench.WriteJSON(os.Stdout, rep)
	} else {
		err = bench.WriteTable(os.Stdout, rep)
	}
	if err != nil {
		return err
	}
	var failed []string
	for _, r := range rep.Results {
		if r.Error != "" {
			failed = append(failed, r.Method)
		}
	}
	if len(failed) > 0 {
		// The report is out (failures named in it); the status says so.
		return &exitError{code: 1, err: fmt.Errorf("bench: %d result(s) failed: %s", len(failed), strings.Join(failed, ", "))}
	}
	return nil
}

// writeReportFile writes rep as JSON to path (temp file renamed into
// place).
func writeReportFile(path string, rep *bench.Report) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := bench.WriteJSON(f, rep); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
