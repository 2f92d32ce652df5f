package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/snapshot"
	"github.com/smolvm/smolvm/vmm/control"
)

// Issue 9's "done when" list for smolvm run, through bin/smolvm as a user
// would: boot a guest with its agent, start a counter and write a blob in
// its RAM, snapshot it, record the working set, then restore clones in each
// paging mode. Figures are logged with the prefix "figure:" (nested TCG).

// smolvmIn runs bin/smolvm with SMOLVM_RUN_DIR=root and returns stdout,
// stderr and the exit status.
func smolvmIn(t *testing.T, root string, timeout time.Duration, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, smolvmBin(t), args...)
	c.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("smolvm %v: %v\nstderr: %s", args, err, errOut.String())
	}
	return out.String(), errOut.String(), c.ProcessState.ExitCode()
}

// cloneProbe is what each clone prints: the counter twice a second apart,
// the blob's hash, 16 random bytes, hostname and machine-id.
const cloneProbe = `a=$(cat /tmp/counter); sleep 1; b=$(cat /tmp/counter); echo "counter $a $b"; ` +
	`echo "blob $(sha256sum /tmp/blob | cut -d' ' -f1)"; echo "random $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"; ` +
	`echo "host $(hostname)"; echo "mid $(cat /etc/machine-id 2>/dev/null)"`

type probeResult struct {
	c1, c2             int
	blob, random, host string
	machineID          string
}

func parseProbe(t *testing.T, out string) probeResult {
	t.Helper()
	var p probeResult
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "counter":
			if len(f) == 3 {
				p.c1, _ = strconv.Atoi(f[1])
				p.c2, _ = strconv.Atoi(f[2])
			}
		case "blob":
			p.blob = f[1]
		case "random":
			p.random = f[1]
		case "host":
			p.host = f[1]
		case "mid":
			p.machineID = f[1]
		}
	}
	if p.c1 == 0 || p.blob == "" || p.random == "" {
		t.Fatalf("clone printed %q", out)
	}
	return p
}

type runStatsFile struct {
	ReadyS   float64 `json:"ready_s"`
	Timeline struct {
		Resumed   float64 `json:"resumed_s"`
		Connected float64 `json:"connected_s"`
	} `json:"timeline"`
	Memory   snapshot.MemoryStats `json:"memory"`
	MemBytes int64                `json:"mem_bytes"`
	Identity struct {
		Applied []string `json:"applied"`
		Errors  []string `json:"errors"`
	} `json:"identity"`
}

// readRunStats reads the file `smolvm run --stats` wrote.
func readRunStats(t *testing.T, file string) runStatsFile {
	t.Helper()
	var st runStatsFile
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return st
}

func TestKVMRun(t *testing.T) {
	kvmtest.Require(t)
	useBinHelpers(t)
	vm := bootAgentVM(t, "src")
	root := vm.root
	t.Cleanup(func() { stopBundleDaemons(t, root) })
	t.Setenv("SMOLVM_RUN_DIR", root) // for RecordWorkingSet in this process
	vm.mustExec(t, "true")
	bootReady := regexp.MustCompile(`guest agent ready after ([0-9.]+) s`).FindStringSubmatch(vm.console.String())
	if bootReady == nil {
		t.Fatalf("no ready line from boot:\n%s", tailLines(vm.console.String()))
	}
	bootS, _ := strconv.ParseFloat(bootReady[1], 64)

	blobOut := vm.mustExec(t, "sh", "-c",
		"setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; usleep 20000; done' </dev/null >/dev/null 2>&1 & "+
			"head -c 8388608 /dev/urandom > /tmp/blob; sha256sum /tmp/blob | cut -d' ' -f1; sleep 1; cat /tmp/counter")
	bl := strings.Fields(blobOut)
	if len(bl) != 2 {
		t.Fatalf("setup printed %q", blobOut)
	}
	blobSHA := bl[0]
	c0, _ := strconv.Atoi(bl[1])
	if c0 == 0 {
		t.Fatalf("counter not running: %q", blobOut)
	}

	dir := t.TempDir()
	bundle := filepath.Join(dir, "src.smolmachine")
	if out, errOut, code := smolvmIn(t, root, 5*time.Minute, "snapshot", "src", "-o", bundle, "--stop"); code != 0 {
		t.Fatalf("snapshot: exit %d\n%s\n%s", code, out, errOut)
	}
	select {
	case <-vm.exited:
	case <-time.After(time.Minute):
		t.Fatal("source VM did not exit after snapshot --stop")
	}
	if !hasWorkingSet(t, bundle) {
		start := time.Now()
		ws, err := snapshot.RecordWorkingSet(context.Background(), bundle, snapshot.RecordOptions{ReadyTimeout: 150 * time.Second})
		if err != nil {
			t.Fatalf("record working set: %v", err)
		}
		t.Logf("figure: working set recorded in %.2f s: %d pages (%.1f MiB)", time.Since(start).Seconds(), ws.Pages(), float64(ws.Pages())*4096/(1<<20))
	}
	if !hasWorkingSet(t, bundle) {
		t.Fatal("bundle has no working set after recording")
	}
	bundleSHA := fileSHA(t, bundle)
	if fi, err := os.Stat(bundle); err == nil {
		t.Logf("figure: bundle %.1f MiB for 256 MiB of RAM", float64(fi.Size())/(1<<20))
	}

	seen := map[string]string{}
	runClone := func(t *testing.T, name string, args ...string) (probeResult, runStatsFile) {
		t.Helper()
		stats := filepath.Join(dir, name+".json")
		all := append([]string{"run", bundle, "--name", name, "--ready-timeout", "150s", "--stats", stats}, args...)
		all = append(all, "--", "sh", "-c", cloneProbe)
		out, errOut, code := smolvmIn(t, root, 5*time.Minute, all...)
		if code != 0 {
			t.Fatalf("run %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
		p := parseProbe(t, out)
		if p.c1 < c0 || p.c2 <= p.c1 {
			t.Fatalf("counter after restore: %d then %d (it was %d before the snapshot): not running on", p.c1, p.c2, c0)
		}
		if p.blob != blobSHA {
			t.Fatalf("blob in guest RAM changed: %s, was %s", p.blob, blobSHA)
		}
		if other, ok := seen[p.random]; ok {
			t.Fatalf("clones %s and %s read the same /dev/urandom bytes %s", other, name, p.random)
		}
		seen[p.random] = name
		if p.host != name {
			t.Fatalf("clone hostname %q, want %q", p.host, name)
		}
		st := readRunStats(t, stats)
		if len(st.Identity.Errors) > 0 {
			t.Fatalf("identity errors: %v", st.Identity.Errors)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(errOut))
		return p, st
	}

	var mu sync.Mutex
	figures := map[string]runStatsFile{}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"uffd", []string{"--paging", "uffd"}},
		{"uffd-noprefetch", []string{"--paging", "uffd", "--no-prefetch"}},
		{"uffd-racing", []string{"--paging", "uffd", "--wait-prefetch=false"}},
		{"mmap", []string{"--paging", "mmap"}},
		{"eager", []string{"--paging", "eager"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, st := runClone(t, "c-"+tc.name, tc.args...)
			mu.Lock()
			figures[tc.name] = st
			mu.Unlock()
			checkPrefetchUse(t, tc.name, st)
		})
	}
	t.Run("four-at-once", func(t *testing.T) {
		const n = 4
		var wg sync.WaitGroup
		outs := make([]string, n)
		codes := make([]int, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok := "clone-" + strconv.Itoa(i)
				var errOut string
				outs[i], errOut, codes[i] = smolvmIn(t, root, 5*time.Minute, "run", bundle, "--name", "pair-"+strconv.Itoa(i), "--ready-timeout", "150s",
					"--", "sh", "-c", "echo "+tok+" > /tmp/who; sleep 2; cat /tmp/who; cat /tmp/counter")
				if codes[i] != 0 {
					outs[i] += "\nstderr: " + errOut
				}
			}()
		}
		wg.Wait()
		for i := range n {
			f := strings.Fields(outs[i])
			if codes[i] != 0 || len(f) < 2 || f[0] != "clone-"+strconv.Itoa(i) {
				t.Fatalf("clone %d: exit %d, output %q", i, codes[i], outs[i])
			}
		}
	})
	t.Run("oci", func(t *testing.T) { checkRunOCI(t, root, dir, bundle, blobSHA, c0) })
	t.Run("frames", func(t *testing.T) { checkFramePages(t, root, dir, bundle, blobSHA) })
	if got := fileSHA(t, bundle); got != bundleSHA {
		t.Fatalf("bundle changed by runs: sha256 %s, was %s", got, bundleSHA)
	}

	t.Run("snapshot-of-clone", func(t *testing.T) { checkCloneCycle(t, root, dir, bundle, blobSHA) })
	if got := fileSHA(t, bundle); got != bundleSHA {
		t.Fatalf("bundle changed by a snapshot of its clone: sha256 %s, was %s", got, bundleSHA)
	}
	t.Run("daemon-death", func(t *testing.T) { checkDaemonDeath(t, root, dir, bundle) })

	t.Run("corrupt", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.smolmachine")
		corruptMemoryFrames(t, bundle, bad)
		for _, paging := range []string{"eager", "uffd"} {
			start := time.Now()
			out, errOut, code := smolvmIn(t, root, 100*time.Second, "run", bad, "--paging", paging, "--ready-timeout", "150s", "--", "sh", "-c", cloneProbe)
			if code == 0 {
				t.Fatalf("%s: a corrupted bundle ran: %s", paging, out)
			}
			if !strings.Contains(errOut, "frame") {
				t.Fatalf("%s: exit %d, error does not name the frame:\n%s", paging, code, errOut)
			}
			t.Logf("figure: corrupted bundle, %s: exit %d after %.1f s: %s", paging, code, time.Since(start).Seconds(), lastLine(errOut))
		}
	})

	for _, mode := range []string{"uffd", "uffd-noprefetch", "uffd-waitprefetch", "mmap", "eager"} {
		st, ok := figures[mode]
		if !ok {
			continue
		}
		line := "figure: restore-to-ready " + mode + ": " + strconv.FormatFloat(st.ReadyS, 'f', 2, 64) + " s (boot-to-ready " +
			strconv.FormatFloat(bootS, 'f', 2, 64) + " s, ratio 1/" + strconv.FormatFloat(bootS/max(st.ReadyS, 1e-6), 'f', 1, 64) + "); RAM read " +
			strconv.FormatFloat(float64(st.Memory.BytesRead)/(1<<20), 'f', 1, 64) + " MiB (" +
			strconv.FormatFloat(100*float64(st.Memory.BytesRead)/float64(st.MemBytes), 'f', 1, 64) + "% of RAM)"
		line += "; agent connected at " + strconv.FormatFloat(st.Timeline.Connected, 'f', 2, 64) + " s, resumed at " + strconv.FormatFloat(st.Timeline.Resumed, 'f', 2, 64) + " s"
		if p := st.Memory.Pager; p != nil {
			line += "; faults " + strconv.FormatInt(p.Faults, 10) + ", prefetched pages " + strconv.FormatInt(p.PrefetchedPages, 10)
		}
		t.Log(line)
	}
}

// checkPrefetchUse checks the prefetched pages used and wasted that run
// reports (pager.AccessTracker): measured when the working set was in
// before the vCPUs ran (uffd, mmap: --wait-prefetch is the default), each
// prefetched page counted once, the guest having used some; not measured
// when the prefetch raced the guest or there was none.
func checkPrefetchUse(t *testing.T, mode string, st runStatsFile) {
	t.Helper()
	u, m := st.Memory.PrefetchUse, st.Memory
	switch mode {
	case "uffd", "mmap":
		if u == nil {
			t.Fatalf("%s: no prefetch use measured: %s", mode, m.PrefetchUseError)
		}
		t.Logf("figure: %s: prefetched %d pages, used %d, wasted %d, zero page (not known) %d, absent %d; marked in %.1f ms before resume (clear_refs %.1f ms), measured in %.1f ms [nested TCG]",
			mode, u.Pages, u.Used, u.Wasted, u.Zero, u.Absent, u.MarkSeconds*1e3, u.ClearSeconds*1e3, u.MeasureSeconds*1e3)
		if u.Pages == 0 || u.Used <= 0 {
			t.Fatalf("%s: prefetch use %+v: the guest used no prefetched page", mode, *u)
		}
		if u.Used+u.Wasted+u.Zero+u.Absent != u.Pages || u.Wasted < 0 || u.Zero < 0 || u.Absent < 0 {
			t.Fatalf("%s: prefetch use %+v does not add up", mode, *u)
		}
		if mode == "uffd" {
			// Every listed page was filled by the prefetch (nothing
			// faulted before it completed) and stays present.
			if m.Pager == nil || u.Pages != m.Pager.PrefetchedPages || u.Absent != 0 {
				t.Fatalf("uffd: prefetch use %+v, daemon's pager stats %+v: used + wasted + zero != pages prefetched", *u, m.Pager)
			}
		}
	case "uffd-racing", "uffd-noprefetch", "eager":
		if u != nil {
			t.Fatalf("%s: prefetch use measured (%+v) though the prefetch was not in before the vCPUs ran", mode, *u)
		}
		if mode == "uffd-racing" && m.PrefetchUseError == "" {
			t.Fatalf("uffd-racing: no reason given for not measuring the prefetch's use")
		}
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func hasWorkingSet(t *testing.T, bundle string) bool {
	t.Helper()
	f, err := os.Open(bundle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	r, err := format.Open(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Manifest().WorkingSet) > 0
}

// corruptMemoryFrames copies bundle to bad with one byte flipped in the
// middle of every internal frame holding memory pages.
func corruptMemoryFrames(t *testing.T, bundle, bad string) {
	t.Helper()
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	r, err := format.Open(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := r.Artifact(format.ArtifactMemory)
	if err != nil {
		t.Fatal(err)
	}
	// Frames that also hold pages of another artifact (the state) are
	// left alone: this is about guest memory.
	shared := map[int32]bool{}
	for _, other := range r.Manifest().Artifacts {
		if other.Name != format.ArtifactMemory {
			for _, e := range other.Extents {
				shared[e.Frame] = true
			}
		}
	}
	done := map[int32]bool{}
	for _, e := range a.Extents {
		if done[e.Frame] || shared[e.Frame] {
			continue
		}
		done[e.Frame] = true
		fi := r.Frame(int(e.Frame))
		if fi.External {
			continue
		}
		data[fi.Offset+fi.Length/2] ^= 0x5A
	}
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("corrupted %d memory frames", len(done))
}

// stopBundleDaemons ends the smolmount daemons smolvm run started under
// root.
func stopBundleDaemons(t *testing.T, root string) {
	mnts, _ := filepath.Glob(filepath.Join(root, "bundles", "*"))
	for _, m := range mnts {
		if strings.Contains(filepath.Base(m), ".") {
			continue // .lock, .log
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = snapshot.StopDaemon(ctx, m)
		cancel()
	}
}

// checkCloneCycle: a clone running without a command (like boot --name)
// takes exec and snapshot; the snapshot of the clone, run again, still has
// the original counter running, the blob intact and the clone's own change.
func checkCloneCycle(t *testing.T, root, dir, bundle, blobSHA string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, smolvmBin(t), "run", bundle, "--name", "k1", "--ready-timeout", "150s")
	c.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	var console syncBuf
	c.Stdout, c.Stderr = &console, &console
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	defer func() {
		_ = c.Process.Kill()
		<-exited
	}()
	// exec fails at once for a name without a state dir: wait for it.
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := os.Stat(filepath.Join(root, "k1", control.ControlSocketName)); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("smolvm run k1 exited early: %v\n%s", err, tailLines(console.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no control socket for k1")
		}
	}
	vm := &agentVM{name: "k1", root: root}
	out := vm.mustExec(t, "sh", "-c", "echo cycle-mark > /tmp/cyclemark; cat /tmp/counter")
	before, _ := strconv.Atoi(strings.TrimSpace(out))
	b2 := filepath.Join(dir, "clone.smolmachine")
	if o, e, code := smolvmIn(t, root, 5*time.Minute, "snapshot", "k1", "-o", b2, "--stop"); code != 0 {
		t.Fatalf("snapshot of the clone: exit %d\n%s\n%s\nconsole: %s", code, o, e, tailLines(console.String()))
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("clone process after snapshot --stop: %v\n%s", err, tailLines(console.String()))
		}
	case <-time.After(time.Minute):
		t.Fatal("clone did not exit after snapshot --stop")
	}
	o, e, code := smolvmIn(t, root, 5*time.Minute, "run", b2, "--ready-timeout", "150s", "--", "sh", "-c", "cat /tmp/cyclemark; "+cloneProbe)
	if code != 0 {
		t.Fatalf("run of the clone's snapshot: exit %d\n%s\n%s", code, o, e)
	}
	if !strings.HasPrefix(o, "cycle-mark\n") {
		t.Fatalf("the clone's change is lost: %q", o)
	}
	p := parseProbe(t, o)
	if p.c1 < before || p.c2 <= p.c1 || p.blob != blobSHA {
		t.Fatalf("after snapshot -> run -> snapshot -> run: counter %d then %d (was %d), blob %s (want %s)", p.c1, p.c2, before, p.blob, blobSHA)
	}
	t.Logf("figure: snapshot of a clone: %.1f MiB (its parent %.1f MiB)", float64(fileSize(t, b2))/(1<<20), float64(fileSize(t, bundle))/(1<<20))
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// checkDaemonDeath: killing the bundle's daemon under a lazily restored
// clone stops the clone within seconds, non-zero, with an error saying
// so; the next run starts a new daemon.
func checkDaemonDeath(t *testing.T, root, dir, bundle string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stats := filepath.Join(dir, "victim.json")
	c := exec.CommandContext(ctx, smolvmBin(t), "run", bundle, "--name", "victim", "--no-prefetch", "--ready-timeout", "150s",
		"--stats", stats, "--", "sh", "-c", "sleep 120; echo survived")
	c.Env = append(os.Environ(), "SMOLVM_RUN_DIR="+root)
	var out, errOut syncBuf
	c.Stdout, c.Stderr = &out, &errOut
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	defer func() {
		_ = c.Process.Kill()
		<-exited
	}()
	var st struct {
		Mount string `json:"daemon_mount"`
	}
	for deadline := time.Now().Add(3 * time.Minute); ; {
		if b, err := os.ReadFile(stats); err == nil && json.Unmarshal(b, &st) == nil && st.Mount != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clone not ready: %s", errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec, err := fusefs.ReadRecord(st.Mount)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case err := <-exited:
		exited <- err
		code := c.ProcessState.ExitCode()
		if code == 0 || !strings.Contains(errOut.String(), "daemon") {
			t.Fatalf("after the daemon died: exit %d, stderr %s", code, errOut.String())
		}
		t.Logf("figure: daemon killed: clone exited %d after %.2f s: %s", code, time.Since(killed).Seconds(), lastLine(errOut.String()))
	case <-time.After(60 * time.Second):
		t.Fatalf("clone still running 60 s after its daemon died; stderr %s", errOut.String())
	}
	if o, e, code := smolvmIn(t, root, 5*time.Minute, "run", bundle, "--ready-timeout", "150s", "--", "true"); code != 0 {
		t.Fatalf("run after the daemon died: exit %d\n%s\n%s", code, o, e)
	}
}
