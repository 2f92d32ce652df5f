package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/snapshot"
)

// Issue 9: "16 concurrent runs of one bundle all work, sharing one daemon
// and cache". A small guest (1 vCPU, 128 MiB) is snapshotted, then 16
// `smolvm run BUNDLE -- CMD` start at once. Figures are logged with the
// prefix "figure:" (nested TCG).

const sixteenClones = 16

// concurrentProbe prints 16 random bytes, the hostname (boot_id is not
// used: it is generated once per boot, so every clone shares the
// parent's) and the interrupts the ACPI Generic Event Device took: one
// VMGenID notification per restore (the cloud kernel has the GED driver,
// not vmgenid).
const concurrentProbe = `echo "random $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"; echo "host $(hostname)"; ` +
	`echo "ged $(awk 'BEGIN {n=0} /ACPI:Ged/ {for (i=2; i<NF; i++) if ($i ~ /^[0-9]+$/) n+=$i} END {print n}' /proc/interrupts)"`

// liveBundleDaemons lists the mount points under root/bundles whose daemon
// record names bundleAbs and whose process is alive.
func liveBundleDaemons(t *testing.T, root, bundleAbs string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "bundles"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var live []string
	for _, e := range ents {
		if !e.IsDir() || strings.Contains(e.Name(), ".") {
			continue // .lock, .log
		}
		mnt := filepath.Join(root, "bundles", e.Name())
		rec, err := fusefs.ReadRecord(mnt)
		if err != nil || rec.Bundle != bundleAbs || unix.Kill(rec.PID, 0) != nil {
			continue
		}
		live = append(live, mnt)
	}
	return live
}

// minMemAvailable samples MemAvailable (/proc/meminfo) until stop closes
// and returns the lowest value seen, in bytes (-1 if unreadable).
func minMemAvailable(stop <-chan struct{}) <-chan int64 {
	res := make(chan int64, 1)
	go func() {
		low := int64(-1)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile("/proc/meminfo"); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
						if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && (low < 0 || kb*1024 < low) {
							low = kb * 1024
						}
					}
				}
			}
			select {
			case <-stop:
				res <- low
				return
			case <-tick.C:
			}
		}
	}()
	return res
}

// daemonStoreStats reads the chunk store counters from the daemon's
// .stats (this test process is not the daemon: no self-fault).
func daemonStoreStats(t *testing.T, mnt string) (fusefs.FSStats, map[string]int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mnt, fusefs.StatsName))
	if err != nil {
		t.Fatal(err)
	}
	fs, raw, err := fusefs.ParseStats(b)
	if err != nil {
		t.Fatalf("%s: %v", fusefs.StatsName, err)
	}
	store := map[string]int64{}
	if err := json.Unmarshal(raw, &store); err != nil {
		t.Fatalf("%s store: %v: %s", fusefs.StatsName, err, raw)
	}
	return fs, store
}

// snapshotAndStop runs `smolvm snapshot NAME -o bundle --stop` (bounded by
// timeout) and waits (a minute at most) for the VM's process to exit.
func snapshotAndStop(t *testing.T, vm *agentVM, bundle string, timeout time.Duration) {
	t.Helper()
	if out, errOut, code := smolvmIn(t, vm.root, timeout, "snapshot", vm.name, "-o", bundle, "--stop"); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, errOut)
	}
	select {
	case <-vm.exited:
	case <-time.After(time.Minute):
		t.Fatal("source VM did not exit after snapshot --stop")
	}
}

func TestKVMRunSixteenClones(t *testing.T) {
	kvmtest.Require(t)
	testStart := time.Now()
	useBinHelpers(t)
	vm := bootAgentVM(t, "src16", "--cpus", "1", "--mem", "128M")
	root := vm.root
	t.Cleanup(func() { stopBundleDaemons(t, root) })
	t.Setenv("SMOLVM_RUN_DIR", root) // for RecordWorkingSet in this process
	vm.mustExec(t, "true")

	dir := t.TempDir()
	bundle := filepath.Join(dir, "small.smolmachine")
	snapshotAndStop(t, vm, bundle, 3*time.Minute)
	if !hasWorkingSet(t, bundle) {
		ws, err := snapshot.RecordWorkingSet(context.Background(), bundle, snapshot.RecordOptions{ReadyTimeout: 100 * time.Second})
		if err != nil {
			t.Fatalf("record working set: %v", err)
		}
		t.Logf("working set recorded here: %d pages", ws.Pages())
	}
	bundleSHA := fileSHA(t, bundle)
	if d := liveBundleDaemons(t, root, bundle); len(d) != 0 {
		t.Fatalf("a daemon already serves the bundle before the runs: %v", d)
	}
	t.Logf("figure: snapshot of a 128 MiB guest ready %.1f s after the test began; bundle %.1f MiB",
		time.Since(testStart).Seconds(), float64(fileSize(t, bundle))/(1<<20))

	type clone struct {
		name, out, errOut string
		code              int
		stats             runStatsFile
		daemon            string
		started           bool
		done              time.Duration
	}
	clones := make([]clone, sixteenClones)
	stopSampling := make(chan struct{})
	lowMem := minMemAvailable(stopSampling)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &clones[i]
			c.name = "c16-" + strconv.Itoa(i)
			stats := filepath.Join(dir, c.name+".json")
			c.out, c.errOut, c.code = smolvmIn(t, root, 3*time.Minute, "run", bundle, "--name", c.name,
				"--ready-timeout", "150s", "--stats", stats, "--", "sh", "-c", concurrentProbe)
			c.done = time.Since(start)
			b, err := os.ReadFile(stats)
			if err != nil {
				return // reported with the exit status below
			}
			var st struct {
				runStatsFile
				Daemon  string `json:"daemon_mount"`
				Started bool   `json:"daemon_started"`
			}
			if err := json.Unmarshal(b, &st); err == nil {
				c.stats, c.daemon, c.started = st.runStatsFile, st.Daemon, st.Started
			}
		}()
	}
	wg.Wait()
	allDone := time.Since(start)
	close(stopSampling)
	low := <-lowMem

	randoms := map[string]string{}
	daemons := map[string]int{}
	started := 0
	var pagesCopied, faults int64
	var slowest float64
	for _, c := range clones {
		if c.code != 0 {
			t.Errorf("%s: exit %d\nstdout: %s\nstderr: %s", c.name, c.code, c.out, c.errOut)
			continue
		}
		var random, host, ged string
		for _, l := range strings.Split(c.out, "\n") {
			if f := strings.Fields(l); len(f) == 2 {
				switch f[0] {
				case "random":
					random = f[1]
				case "host":
					host = f[1]
				case "ged":
					ged = f[1]
				}
			}
		}
		if ged != "1" {
			t.Errorf("%s: the ACPI GED took %q interrupts since boot, want 1 (the restore's VMGenID notification)", c.name, ged)
		}
		if len(random) != 32 {
			t.Errorf("%s printed no 16 random bytes: %q", c.name, c.out)
		} else if other, ok := randoms[random]; ok {
			t.Errorf("clones %s and %s read the same /dev/urandom bytes %s", other, c.name, random)
		} else {
			randoms[random] = c.name
		}
		if host != c.name {
			t.Errorf("%s: hostname %q", c.name, host)
		}
		if c.daemon == "" {
			t.Errorf("%s: --stats names no daemon", c.name)
		}
		daemons[c.daemon]++
		if c.started {
			started++
		}
		if len(c.stats.Identity.Errors) > 0 {
			t.Errorf("%s: identity errors: %v", c.name, c.stats.Identity.Errors)
		}
		if p := c.stats.Memory.Pager; p != nil {
			pagesCopied += p.PagesCopied
			faults += p.Faults
		}
		slowest = max(slowest, c.stats.ReadyS)
	}
	if len(daemons) != 1 || started != 1 {
		t.Errorf("clones used daemons %v, %d of them started one: want one daemon, started once", daemons, started)
	}
	live := liveBundleDaemons(t, root, bundle)
	if len(live) != 1 {
		t.Fatalf("%d live daemons serve the bundle after the runs: %v", len(live), live)
	}
	if got := fileSHA(t, bundle); got != bundleSHA {
		t.Fatalf("bundle changed by 16 runs: sha256 %s, was %s", got, bundleSHA)
	}
	fsSt, store := daemonStoreStats(t, live[0])
	ram := clones[0].stats.MemBytes
	t.Logf("figure: %d clones of a 128 MiB, 1-vCPU guest at once: all done in %.1f s, slowest restore-to-ready %.2f s [nested TCG]",
		sixteenClones, allDone.Seconds(), slowest)
	t.Logf("figure: one daemon for %d clones: frames fetched %d (%.1f MiB compressed, %.1f MiB decoded), cache hits %d / misses %d; "+
		"clones copied in %.1f MiB in all (%d faults) = %.2f%% of %d x RAM (%.0f MiB); FUSE bytes read %d",
		sixteenClones, store["frames_fetched"], float64(store["bytes_fetched"])/(1<<20), float64(store["bytes_decoded"])/(1<<20),
		store["cache_hits"], store["cache_misses"], float64(pagesCopied*4096)/(1<<20), faults,
		100*float64(pagesCopied*4096)/float64(max(1, int64(sixteenClones)*ram)), sixteenClones, float64(int64(sixteenClones)*ram)/(1<<20), fsSt.BytesRead)
	if low >= 0 {
		t.Logf("figure: lab MemAvailable at its lowest during the runs: %.0f MiB", float64(low)/(1<<20))
	}
	if store["bytes_decoded"] <= 0 || store["bytes_decoded"] >= int64(sixteenClones)*ram {
		t.Errorf("daemon decoded %d bytes for %d clones of %d bytes RAM: want more than 0 and less than one copy each", store["bytes_decoded"], sixteenClones, ram)
	}
	t.Logf("whole test %.1f s", time.Since(testStart).Seconds())
}
