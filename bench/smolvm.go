package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/fusefs"
)

// vmSeq numbers the VMs the bench names, so names never repeat in a run.
var vmSeq atomic.Int64

func vmName(prefix string) string {
	return fmt.Sprintf("bench-%s-%d-%d", prefix, os.Getpid(), vmSeq.Add(1))
}

// bootArgs is `smolvm boot` of the bench's guest: no network (QEMU's runs
// have none either), the console input kept open.
func bootArgs(g *Guest, name string) []string {
	return []string{"boot", "--name", name, "--kernel", g.Kernel, "--initrd", g.Initrd,
		"--cmdline", g.Cmdline, "--cpus", strconv.Itoa(g.CPUs), "--mem", strconv.FormatInt(g.MemBytes, 10), "--net", "none"}
}

func smolvmBoot() Method {
	return Method{
		Name:  MethodBoot,
		Desc:  "smolvm boot: kernel + initramfs to the agent's ready notification",
		check: func(g *Guest) error { return nil },
		size:  bootSize,
		start: func(ctx context.Context, g *Guest, _ *prepared, _ string) (*Instance, error) {
			name := vmName("boot")
			return startSmolvm(ctx, g, name, bootArgs(g, name))
		},
	}
}

// bootSize is what a boot starts from: the kernel and the initramfs.
func bootSize(g *Guest) int64 {
	var n int64
	for _, p := range []string{g.Kernel, g.Initrd} {
		fi, err := os.Stat(p)
		if err != nil {
			return Unknown
		}
		n += fi.Size()
	}
	return n
}

// hasSubcommand reports whether the smolvm binary has a subcommand (issue
// 9's snapshot and run may be missing from an older build).
func hasSubcommand(smolvm, sub string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, smolvm, sub, "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s has no %q subcommand (%v: %s)", errSkip, smolvm, sub, err, firstLine(out))
	}
	return nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}

// smolvmRestore is `smolvm run BUNDLE FLAGS...`: all the restore methods
// share one snapshot of the guest booted to ready.
func smolvmRestore(name, desc string, flags ...string) Method {
	return Method{
		Name: name,
		Desc: desc,
		check: func(g *Guest) error {
			if err := hasSubcommand(g.Smolvm, "snapshot"); err != nil {
				return err
			}
			return hasSubcommand(g.Smolvm, "run")
		},
		prepareKey: "smolvm-snapshot",
		prepare:    smolvmSnapshot,
		start: func(ctx context.Context, g *Guest, p *prepared, _ string) (*Instance, error) {
			vm := vmName(name)
			stats := filepath.Join(g.Work, vm+".stats.json")
			args := append([]string{"run", p.Path, "--name", vm, "--stats", stats}, flags...)
			in, err := startSmolvm(ctx, g, vm, args)
			if err != nil {
				return nil, err
			}
			in.Shared = daemonPIDs(g.RunDir)
			if in.RAMRead, in.Faults, in.Prefetch, in.Phases, err = readRunStats(ctx, stats); err != nil {
				_ = in.Stop()
				return nil, err
			}
			return in, nil
		},
	}
}

// smolvmSnapshot boots the guest to ready and snapshots it (--stop) into a
// bundle under g.Work; its cleanup ends the bundle daemons the runs
// started.
func smolvmSnapshot(ctx context.Context, g *Guest) (*prepared, error) {
	name := vmName("src")
	in, err := startSmolvm(ctx, g, name, bootArgs(g, name))
	if err != nil {
		return nil, fmt.Errorf("booting the guest to snapshot: %w", err)
	}
	defer in.Stop()
	out := filepath.Join(g.Work, fmt.Sprintf("guest-%d.smolmachine", g.MemBytes))
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(sctx, g.Smolvm, "snapshot", name, "-o", out, "--stop")
	cmd.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+g.RunDir)
	cmd.WaitDelay = 5 * time.Second
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("smolvm snapshot %s: %v: %s; the VM's output: %s", name, err, b, in.Output())
	}
	fi, err := os.Stat(out)
	if err != nil {
		return nil, fmt.Errorf("smolvm snapshot wrote no bundle: %w", err)
	}
	return &prepared{Path: out, Size: fi.Size(), cleanup: func() {
		stopDaemons(g.RunDir)
		os.Remove(out)
	}}, nil
}

// daemonPIDs lists the smolmount daemons recorded under runDir.
func daemonPIDs(runDir string) []int {
	var pids []int
	for _, r := range daemonRecords(runDir) {
		pids = append(pids, r.PID)
	}
	return pids
}

func daemonRecords(runDir string) []fusefs.Record {
	dir := filepath.Join(runDir, "mounts")
	ents, _ := os.ReadDir(dir)
	var out []fusefs.Record
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var r fusefs.Record
		if json.Unmarshal(b, &r) == nil && r.PID > 0 {
			out = append(out, r)
		}
	}
	return out
}

// stopDaemons unmounts every bundle daemon recorded under runDir (bounded).
func stopDaemons(runDir string) {
	for _, r := range daemonRecords(runDir) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = fusefs.Unmount(ctx, r.MountPoint)
		cancel()
	}
}
