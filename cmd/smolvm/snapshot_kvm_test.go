package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/snapshot"
	"github.com/smolvm/smolvm/vmm/control"
)

// Issue 9's save side through bin/smolvm: snapshot a running VM (it runs
// on, the working set is recorded in its own process), then snapshot a
// running clone (smolvm run --name): the clone's bundle stores only what
// changed since its parent.

// startRunVM starts `smolvm run BUNDLE --name NAME` (no command: it keeps
// running) and waits for its control socket.
func startRunVM(t *testing.T, root, bundle, name string) *agentVM {
	t.Helper()
	vm := startAgentVM(t, name, root, "output", smolvmBin(t), "run", bundle, "--name", name, "--ready-timeout", "150s")
	sock := filepath.Join(root, name, control.ControlSocketName)
	for deadline := time.Now().Add(3 * time.Minute); ; {
		if _, err := os.Stat(sock); err == nil {
			return vm
		}
		select {
		case <-vm.exited:
			t.Fatalf("smolvm run exited early: %v\n%s", vm.waitErr, tailLines(vm.console.String()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no control socket %s within 3 min", sock)
		}
	}
}

// snapshotJSON runs `smolvm snapshot NAME -o out --json args...`.
func snapshotJSON(t *testing.T, root, name, out string, args ...string) snapshot.Result {
	t.Helper()
	stdout, stderr, code := smolvmIn(t, root, 8*time.Minute, append([]string{"snapshot", name, "-o", out, "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("snapshot %s: exit %d\n%s\n%s", name, code, stdout, stderr)
	}
	var res snapshot.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.Pack == nil {
		t.Fatalf("snapshot %s printed %q: %v", name, stdout, err)
	}
	return res
}

func counterValue(t *testing.T, vm *agentVM) int {
	t.Helper()
	n, err := strconv.Atoi(strings.TrimSpace(vm.mustExec(t, "cat", "/tmp/counter")))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestKVMSnapshotCLI(t *testing.T) {
	kvmtest.Require(t)
	useBinHelpers(t)
	img := ext4Image(t)
	imgSHA := fileSHA(t, img)
	src := bootAgentVM(t, "snapsrc", "--disk", "vda="+img+",cow")
	root := src.root
	t.Cleanup(func() { stopBundleDaemons(t, root) })
	src.mustExec(t, "sh", "-c",
		"setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; usleep 20000; done' </dev/null >/dev/null 2>&1 & sleep 1")
	c0 := counterValue(t, src)
	// The disk stays mounted across every snapshot and restore below.
	tok1, tok2 := token(t), token(t)
	src.mustExec(t, "sh", "-c", "set -e; mkdir -p /mnt/vda; mount -t ext4 /dev/vda /mnt/vda; echo "+tok1+" > /mnt/vda/one; sync")

	dir := t.TempDir()
	first := filepath.Join(dir, "first.smolmachine")
	res := snapshotJSON(t, root, "snapsrc", first)
	if res.WorkingSetError != "" || res.WorkingSetPages == 0 {
		t.Fatalf("no working set recorded: %q", res.WorkingSetError)
	}
	if c1 := counterValue(t, src); c1 <= c0 {
		t.Fatalf("source counter %d after the snapshot, %d before: the VM did not resume", c1, c0)
	}
	if out, errOut, code := smolvmIn(t, root, 5*time.Minute, "verify", first); code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	if out, _, code := smolvmIn(t, root, time.Minute, "inspect", first); code != 0 || !strings.Contains(out, "may contain secrets") || !strings.Contains(out, "2 vCPU") {
		t.Fatalf("inspect: exit %d\n%s", code, out)
	}
	t.Logf("figure: smolvm snapshot of a running 256 MiB guest: paused %.2f s, bundle %.1f MiB (%d data pages), working set %d pages recorded in %.1f s, total %.1f s [%s]",
		res.PausedSeconds, float64(res.Pack.FileBytes)/(1<<20), res.Pack.DataPages, res.WorkingSetPages, res.RecordSeconds, res.Seconds, kvmtest.Label())
	src.mustExec(t, "sh", "-c", "poweroff -f >/dev/null 2>&1 &")

	clone := startRunVM(t, root, first, "snapclone")
	if c := counterValue(t, clone); c < c0 {
		t.Fatalf("clone counter %d, below %d seen before the snapshot", c, c0)
	}
	if out := clone.mustExec(t, "sh", "-c", "set -e; cat /mnt/vda/one; echo "+tok2+" > /mnt/vda/two; sync"); strings.TrimSpace(out) != tok1 {
		t.Fatalf("clone read %q from its disk, want %s", out, tok1)
	}
	second := filepath.Join(dir, "second.smolmachine")
	res2 := snapshotJSON(t, root, "snapclone", second, "--no-record", "--stop")
	p := res2.Pack
	if p.NewPages*4 > p.DataPages || p.ReusedPages == 0 {
		t.Fatalf("snapshot of the clone stored %d new of %d data pages (%d reused): want only what changed", p.NewPages, p.DataPages, p.ReusedPages)
	}
	if res2.MemParentPages == 0 {
		t.Fatal("snapshot of a lazily restored clone read every RAM page: none taken from the parent")
	}
	select {
	case <-clone.exited:
	case <-time.After(time.Minute):
		t.Fatal("clone did not exit after snapshot --stop")
	}
	if out, errOut, code := smolvmIn(t, root, 5*time.Minute, "verify", second); code != 0 {
		t.Fatalf("verify second: exit %d\n%s%s", code, out, errOut)
	}
	// The clone of the clone: memory and disk writes of both generations.
	out, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", second, "--ready-timeout", "150s", "--",
		"sh", "-c", "a=$(cat /tmp/counter); sleep 1; echo $a $(cat /tmp/counter) $(cat /mnt/vda/one /mnt/vda/two); umount /mnt/vda")
	if f := strings.Fields(out); code != 0 || len(f) != 4 || f[2] != tok1 || f[3] != tok2 {
		t.Fatalf("run of the second snapshot: exit %d, printed %q (want counter twice, %s, %s)\n%s", code, out, tok1, tok2, errOut)
	} else if a, _ := strconv.Atoi(f[0]); a < c0 || f[0] == f[1] {
		t.Fatalf("counter in the second generation: %s then %s (was %d)", f[0], f[1], c0)
	}
	if after := fileSHA(t, img); after != imgSHA {
		t.Fatalf("the source's base image changed: %s -> %s", imgSHA, after)
	}
	t.Logf("figure: smolvm snapshot of a running clone vs its parent: %d of %d data pages new (%.1f%%), %.2f MiB new bytes, bundle %.1f MiB (self-contained); %d of %d RAM pages never touched by the clone taken from the parent, paused %.2f s, total %.1f s [%s]",
		p.NewPages, p.DataPages, 100*float64(p.NewPages)/float64(p.DataPages), float64(p.NewBytes)/(1<<20), float64(p.FileBytes)/(1<<20),
		res2.MemParentPages, res2.MemBytes/4096, res2.PausedSeconds, res2.Seconds, kvmtest.Label())
}
