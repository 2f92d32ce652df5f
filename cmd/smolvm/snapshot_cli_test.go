package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/snapshot"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/control"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// fakeSnapVM is a paused-able machine for snapshot.Take: 16 MiB of RAM
// with a few non-zero pages, no disks.
type fakeSnapVM struct {
	cfg    vmm.Config
	ram    []byte
	paused bool
	stop   func()
}

func (f *fakeSnapVM) Pause(context.Context) error { f.paused = true; return nil }
func (f *fakeSnapVM) Paused() bool                { return f.paused }
func (f *fakeSnapVM) Resume()                     { f.paused = false }
func (f *fakeSnapVM) Stop()                       { f.stop() }
func (f *fakeSnapVM) RAM() []vmm.RAMRegion        { return []vmm.RAMRegion{{Data: f.ram}} }
func (f *fakeSnapVM) Config() vmm.Config          { return f.cfg }
func (f *fakeSnapVM) Disks() []vmm.DiskImage      { return nil }
func (f *fakeSnapVM) SaveState() (*vmm.State, error) {
	intel := kvm.CPUIDEntry{EBX: 0x756e6547, EDX: 0x49656e69, ECX: 0x6c65746e} // GenuineIntel
	return &vmm.State{VCPUs: []kvm.VCPUState{{CPUID: []kvm.CPUIDEntry{intel}, TSCKHz: 1_000_000}}}, nil
}

func TestSnapshotCLI(t *testing.T) {
	root := t.TempDir()
	vm := startFakeVM(t, root, "vm1", true)
	kernel := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(kernel, []byte(strings.Repeat("k", 10000)), 0o644); err != nil {
		t.Fatal(err)
	}
	machine := &fakeSnapVM{cfg: vmm.Config{Kernel: kernel, CPUs: 1, MemBytes: 16 << 20}, ram: make([]byte, 16<<20), stop: vm.Stop}
	for i := 0; i < 100; i++ {
		machine.ram[i*40960+5] = byte(i + 1)
	}
	vm.srv.SetSnapshot(func(ctx context.Context, req control.SnapshotRequest) (any, error) {
		return snapshot.Take(ctx, machine, snapshot.Options{Output: req.Output, Store: req.Store, Stop: req.Stop, NoRecord: req.NoRecord})
	})
	out := filepath.Join(t.TempDir(), "vm1.smolmachine")

	r := runBin(t, root, "", "snapshot", "vm1", "-o", out, "--json", "--no-record")
	if r.code != 0 {
		t.Fatalf("snapshot: exit %d: %s", r.code, r.stderr)
	}
	var res snapshot.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	if res.Output != out || res.MemDataPages != 100 || res.Stopped || machine.paused {
		t.Fatalf("result %+v (machine paused %v)", res, machine.paused)
	}
	if r := runBin(t, root, "", "verify", out); r.code != 0 {
		t.Fatalf("bundle does not verify: %s %s", r.stdout, r.stderr)
	}

	r = runBin(t, root, "", "inspect", out)
	for _, want := range []string{"snapshot", "GenuineIntel", "1 vCPU", "may contain secrets"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("inspect (exit %d) does not show %q:\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	r = runBin(t, root, "", "inspect", "--json", out)
	var ij struct {
		Snapshot *struct{ VCPUs int } `json:"snapshot"`
		Warning  string               `json:"warning"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ij); err != nil || ij.Snapshot == nil || ij.Snapshot.VCPUs != 1 || ij.Warning == "" {
		t.Fatalf("inspect --json: %v %s", err, r.stdout)
	}

	// Errors: no such VM; a relative store is made absolute (accepted).
	if r := runBin(t, root, "", "snapshot", "nosuch", "-o", out); r.code == 0 || !strings.Contains(r.stderr, "nosuch") {
		t.Fatalf("snapshot of a missing VM: exit %d %s", r.code, r.stderr)
	}
	// --stop: the bundle is written and the VM goes away.
	out2 := filepath.Join(t.TempDir(), "vm1-stop.smolmachine")
	if r := runBin(t, root, "", "snapshot", "vm1", "-o", out2, "--stop", "--no-record"); r.code != 0 || !strings.Contains(r.stdout, "stopped") {
		t.Fatalf("snapshot --stop: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(out2); err != nil {
		t.Fatal(err)
	}
	if _, err := control.Lookup(root, "vm1"); err == nil {
		t.Fatal("the VM's state dir is still there after snapshot --stop")
	}
}
