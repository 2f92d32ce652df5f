package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/vmm"
)

func TestParsePaging(t *testing.T) {
	tests := []struct {
		in   string
		want Paging
		ok   bool
	}{
		{"", PagingUFFD, true}, {"uffd", PagingUFFD, true}, {"mmap", PagingMmap, true},
		{"eager", PagingEager, true}, {"lazy", "", false}, {"UFFD", "", false},
	}
	for _, tc := range tests {
		got, err := ParsePaging(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePaging(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestRAMWriter: memory-artifact offsets land in the right region, also
// for a write that crosses from low RAM into RAM above 4 GiB.
func TestRAMWriter(t *testing.T) {
	layout := []MemoryRegion{{GPA: 0, Offset: 0, Size: 8192}, {GPA: 1 << 32, Offset: 8192, Size: 8192}}
	ram := []vmm.RAMRegion{{GPA: 0, Data: make([]byte, 8192)}, {GPA: 1 << 32, Data: make([]byte, 8192)}}
	w := ramWriter{ram: ram, layout: layout}
	data := bytes.Repeat([]byte{0xAB}, 4096)
	if n, err := w.WriteAt(data, 6144); err != nil || n != 4096 {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if !bytes.Equal(ram[0].Data[6144:], data[:2048]) || !bytes.Equal(ram[1].Data[:2048], data[2048:]) {
		t.Fatal("a write across the regions landed in the wrong place")
	}
	if ram[0].Data[6143] != 0 || ram[1].Data[2048] != 0 {
		t.Fatal("write spilled outside its range")
	}
	if _, err := w.WriteAt(data, 16384); err == nil {
		t.Fatal("a write past guest RAM was accepted")
	}
	if b := ramSlice(ram, layout, 8192+4096, 4096); len(b) != 4096 || &b[0] != &ram[1].Data[4096] {
		t.Fatal("ramSlice of the high region is wrong")
	}
	if b := ramSlice(ram, layout, 4096, 8192); b != nil {
		t.Fatal("ramSlice across regions should be nil")
	}
}

// TestRestoreRefusesBadBundles: a bundle without state, with a damaged
// state artifact, or one that is not a bundle fails before any machine or
// daemon exists, with an error naming the problem.
func TestRestoreRefusesBadBundles(t *testing.T) {
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	memPath := filepath.Join(dir, "mem")
	if err := os.WriteFile(memPath, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	badState := filepath.Join(dir, "state")
	if err := os.WriteFile(badState, []byte("SMOLSTAT but not really a state artifact, far too short"), 0o600); err != nil {
		t.Fatal(err)
	}
	pack := func(name string, withState bool) string {
		p := filepath.Join(dir, name)
		m := format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1, MemoryBytes: 1 << 20}}
		in := []chunkstore.PackInput{{Name: format.ArtifactMemory, Path: memPath}}
		if withState {
			m.State = format.ArtifactState
			in = append(in, chunkstore.PackInput{Name: format.ArtifactState, Path: badState})
		}
		if _, err := chunkstore.Pack(context.Background(), p, chunkstore.PackOptions{Manifest: m, Inputs: in}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notBundle := filepath.Join(dir, "not.smolmachine")
	if err := os.WriteFile(notBundle, bytes.Repeat([]byte("x"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		bundle string
		want   error
	}{
		{"no state", pack("boot.smolmachine", false), ErrNoState},
		{"bad state", pack("bad.smolmachine", true), ErrCorrupt},
		{"not a bundle", notBundle, format.ErrBadMagic},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Restore(context.Background(), RestoreOptions{Bundle: tc.bundle, Daemon: DaemonOptions{Binary: "/nonexistent"}})
			if err == nil {
				r.Close()
				t.Fatal("restore succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}
