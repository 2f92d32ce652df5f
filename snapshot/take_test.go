package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/disk"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// memDisk is a disk.Disk in memory.
type memDisk struct{ b []byte }

func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(d.b)) {
		return 0, io.EOF
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (d *memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(d.b[off:], p), nil }
func (d *memDisk) Size() int64                              { return int64(len(d.b)) }
func (d *memDisk) ReadOnly() bool                           { return false }
func (d *memDisk) Flush() error                             { return nil }
func (d *memDisk) Close() error                             { return nil }

// fakeMachine is a Machine whose RAM and disks are plain slices.
type fakeMachine struct {
	cfg       vmm.Config
	ram       []byte
	disks     []vmm.DiskImage
	paused    bool
	stopped   bool
	pauses    int
	resumes   int
	saveErr   error
	whilePaus func() // checks run while paused (SaveState)
}

func (f *fakeMachine) Pause(ctx context.Context) error {
	if f.stopped {
		return vmm.ErrNotRunning
	}
	f.paused = true
	f.pauses++
	return nil
}
func (f *fakeMachine) Paused() bool { return f.paused }
func (f *fakeMachine) Resume()      { f.paused = false; f.resumes++ }
func (f *fakeMachine) Stop()        { f.stopped = true }
func (f *fakeMachine) SaveState() (*vmm.State, error) {
	if !f.paused {
		return nil, errors.New("fake: save while running")
	}
	if f.saveErr != nil {
		return nil, f.saveErr
	}
	st := &vmm.State{}
	for i := 0; i < f.cfg.CPUs; i++ {
		st.VCPUs = append(st.VCPUs, kvm.VCPUState{ID: i, TSCKHz: 2_000_000, CPUID: []kvm.CPUIDEntry{vendorEntry("GenuineIntel")}})
	}
	return st, nil
}
func (f *fakeMachine) RAM() []vmm.RAMRegion   { return []vmm.RAMRegion{{GPA: 0, Data: f.ram}} }
func (f *fakeMachine) Config() vmm.Config     { return f.cfg }
func (f *fakeMachine) Disks() []vmm.DiskImage { return f.disks }

// newFake builds a 32 MiB machine whose RAM is 70% zero pages, the rest
// random, and a 4 MiB disk with a few written pages.
func newFake(t *testing.T) *fakeMachine {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(kernel, bytes.Repeat([]byte("kernel!"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ram := make([]byte, 32<<20)
	for p := 0; p < len(ram)/format.PageSize; p++ {
		if r.IntN(10) < 3 {
			for i := p * format.PageSize; i < (p+1)*format.PageSize; i += 8 {
				ram[i] = byte(r.Uint32())
			}
		}
	}
	dk := &memDisk{b: make([]byte, 4<<20)}
	copy(dk.b[8192:], "superblock")
	copy(dk.b[3<<20:], "file data")
	return &fakeMachine{
		cfg: vmm.Config{Kernel: kernel, Cmdline: "console=ttyS0", CPUs: 2, MemBytes: int64(len(ram)),
			Disks: []vmm.DiskConfig{{Name: "root", Path: "/nonexistent", Mode: disk.ModeCOW}}},
		ram:   ram,
		disks: []vmm.DiskImage{{Name: "root", Disk: dk}},
	}
}

// readImage reads a whole artifact of a bundle.
func readImage(t *testing.T, b *chunkstore.Bundle, name string) []byte {
	t.Helper()
	im, err := b.Image(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, im.Size())
	if _, err := im.ReadAt(out, 0); err != nil && err != io.EOF {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

func TestTakeWritesBundle(t *testing.T) {
	for _, stop := range []bool{false, true} {
		f := newFake(t)
		out := filepath.Join(t.TempDir(), "vm.smolmachine")
		res, err := Take(context.Background(), f, Options{Output: out, Stop: stop, NoRecord: true})
		if err != nil {
			t.Fatal(err)
		}
		if f.stopped != stop || f.paused == !stop || res.Stopped != stop {
			t.Fatalf("stop=%v: machine stopped=%v paused=%v", stop, f.stopped, f.paused)
		}
		b, err := chunkstore.Open(out, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		if !bytes.Equal(readImage(t, b, "memory"), f.ram) {
			t.Fatal("memory artifact differs from guest RAM")
		}
		if !bytes.Equal(readImage(t, b, "disk/root"), f.disks[0].Disk.(*memDisk).b) {
			t.Fatal("disk artifact differs from the disk")
		}
		st, err := DecodeState(bytes.NewReader(readImage(t, b, "state")))
		if err != nil {
			t.Fatal(err)
		}
		if st.CPU.Vendor != "GenuineIntel" || st.Config.CPUs != 2 || st.Config.Disks[0].Size != 4<<20 {
			t.Fatalf("state: %+v %+v", st.CPU, st.Config)
		}
		if m := b.Manifest(); m.State != "state" || m.Config.VCPUs != 2 || m.Config.Devices[0].Artifact != "disk/root" {
			t.Fatalf("manifest %+v", m)
		}
		if want := int64(0.3 * float64(len(f.ram)/format.PageSize)); res.MemDataPages < want*9/10 || res.MemDataPages > want*11/10 {
			t.Fatalf("%d data pages, want about %d", res.MemDataPages, want)
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".snapshot-*")); len(left) > 0 {
			t.Fatalf("temp files left: %v", left)
		}
	}
}

func TestTakeDedupsAgainstParent(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	first, err := Take(context.Background(), f, Options{Output: filepath.Join(dir, "a.smolmachine"), NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	// The clone changes 1% of its pages.
	r := rand.New(rand.NewPCG(3, 4))
	pages := len(f.ram) / format.PageSize
	for i := 0; i < pages/100; i++ {
		f.ram[r.IntN(pages)*format.PageSize+17]++
	}
	second, err := Take(context.Background(), f, Options{Output: filepath.Join(dir, "b.smolmachine"), Parent: filepath.Join(dir, "a.smolmachine"), NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	if second.Pack.NewPages > int64(pages/100)+8 || second.Pack.NewPages == 0 {
		t.Fatalf("snapshot of the clone stored %d new pages, want about %d (first stored %d)", second.Pack.NewPages, pages/100, first.Pack.NewPages)
	}
	b, err := chunkstore.Open(filepath.Join(dir, "b.smolmachine"), chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !bytes.Equal(readImage(t, b, "memory"), f.ram) {
		t.Fatal("memory of the clone's snapshot differs")
	}
	st, _ := DecodeState(bytes.NewReader(readImage(t, b, "state")))
	if st == nil || st.Parent != first.ManifestDigest {
		t.Fatalf("state's parent %v, want %s", st, first.ManifestDigest)
	}
}

func TestTakeFailureResumes(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeMachine, opts *Options)
	}{
		{"save fails", func(f *fakeMachine, o *Options) { f.saveErr = errors.New("boom") }},
		{"no kernel", func(f *fakeMachine, o *Options) { f.cfg.Kernel = filepath.Join(t.TempDir(), "missing") }},
		{"bad disk name", func(f *fakeMachine, o *Options) { f.cfg.Disks[0].Name = "a/b" }},
		{"missing parent", func(f *fakeMachine, o *Options) { o.Parent = filepath.Join(t.TempDir(), "none") }},
		{"stopped machine", func(f *fakeMachine, o *Options) { f.stopped = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			opts := Options{Output: filepath.Join(t.TempDir(), "x.smolmachine"), Stop: true, NoRecord: true}
			tt.setup(f, &opts)
			wasStopped := f.stopped
			if _, err := Take(context.Background(), f, opts); err == nil {
				t.Fatal("no error")
			}
			if f.paused || f.stopped != wasStopped {
				t.Fatalf("after a failed snapshot: paused=%v stopped=%v", f.paused, f.stopped)
			}
			if _, err := os.Stat(opts.Output); !os.IsNotExist(err) {
				t.Fatalf("output exists after a failure: %v", err)
			}
		})
	}
}

func TestTakeKeepsPausedMachinePaused(t *testing.T) {
	f := newFake(t)
	f.paused = true
	if _, err := Take(context.Background(), f, Options{Output: filepath.Join(t.TempDir(), "p.smolmachine"), NoRecord: true}); err != nil {
		t.Fatal(err)
	}
	if !f.paused || f.resumes != 0 {
		t.Fatalf("a machine paused before the snapshot was resumed (%d resumes)", f.resumes)
	}
}

// A working set that cannot be recorded (here: no smolmount) leaves a
// valid bundle and says why.
func TestTakeRecordFailureKeepsBundle(t *testing.T) {
	f := newFake(t)
	out := filepath.Join(t.TempDir(), "r.smolmachine")
	res, err := Take(context.Background(), f, Options{Output: out,
		Record: RecordOptions{Daemon: DaemonOptions{Binary: filepath.Join(t.TempDir(), "no-smolmount")}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.WorkingSetError == "" || res.WorkingSetPages != 0 {
		t.Fatalf("recording without a daemon: error %q, %d pages", res.WorkingSetError, res.WorkingSetPages)
	}
	b, err := chunkstore.Open(out, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Verify(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if f.paused {
		t.Fatal("machine left paused")
	}
}

// holdingMachine is a fake whose memory hold is checked around capture.
type holdingMachine struct {
	*fakeMachine
	held, holds, savedHeld int
}

func (h *holdingMachine) HoldMemory() (func(), error) {
	h.held++
	h.holds++
	return func() { h.held-- }, nil
}

func (h *holdingMachine) SaveState() (*vmm.State, error) {
	h.savedHeld = h.held
	return h.fakeMachine.SaveState()
}

func TestTakeHoldsMemoryWhileCapturing(t *testing.T) {
	h := &holdingMachine{fakeMachine: newFake(t)}
	if _, err := Take(context.Background(), h, Options{Output: filepath.Join(t.TempDir(), "h.smolmachine"), NoRecord: true}); err != nil {
		t.Fatal(err)
	}
	if h.holds != 1 || h.held != 0 || h.savedHeld != 1 {
		t.Fatalf("holds %d, still held %d, held during save %d: want 1, 0, 1", h.holds, h.held, h.savedHeld)
	}
}
