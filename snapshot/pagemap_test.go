package snapshot

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

func TestPagemapPopulated(t *testing.T) {
	b, err := unix.Mmap(-1, 0, 64*format.PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	touched := map[int]bool{0: true, 5: true, 6: true, 63: true}
	for p := range touched {
		b[p*format.PageSize+1] = 1
	}
	pm, err := openPagemap()
	if err != nil {
		t.Fatal(err)
	}
	defer pm.close()
	got := make([]bool, 64)
	if err := pm.populated(b, got); err != nil {
		t.Fatal(err)
	}
	for p := range got {
		if got[p] != touched[p] {
			t.Errorf("page %d populated=%v, want %v", p, got[p], touched[p])
		}
	}
	if err := pm.populated(b[1:4097], got[:1]); err == nil {
		t.Error("unaligned range accepted")
	}
}

// A clone's never-touched pages come from the parent (only when the
// parent's digest is the one the clone was restored from); touched ones
// from RAM.
func TestTakeCloneUntouchedPagesFromParent(t *testing.T) {
	dir := t.TempDir()
	f := newFake(t)
	f.disks, f.cfg.Disks = nil, nil
	parentPath := filepath.Join(dir, "parent.smolmachine")
	first, err := Take(context.Background(), f, Options{Output: parentPath, NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	parentRAM := f.ram
	// The clone: fresh anonymous memory, as a lazy restore has it; it
	// writes 10 pages and leaves the rest untouched.
	ram, err := unix.Mmap(-1, 0, len(parentRAM), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(ram) })
	want := bytes.Clone(parentRAM)
	for i := 0; i < 10; i++ {
		p := i * 797 * format.PageSize
		ram[p+9], want[p+9] = 0xAB, 0xAB
		copy(ram[p:p+9], parentRAM[p:p+9])
		copy(ram[p+10:p+format.PageSize], parentRAM[p+10:p+format.PageSize])
	}
	pages := int64(len(ram) / format.PageSize)
	for _, tt := range []struct {
		name, digest string
		fromParent   int64
	}{
		{"same parent", first.ManifestDigest, pages - 10},
		{"other digest", "sha256:" + string(bytes.Repeat([]byte("0"), 64)), 0},
		{"no digest", "", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f.ram, f.paused = ram, false
			out := filepath.Join(dir, tt.name+".smolmachine")
			res, err := Take(context.Background(), f, Options{Output: out, Parent: parentPath, ParentDigest: tt.digest, NoRecord: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.MemParentPages != tt.fromParent {
				t.Fatalf("%d pages from the parent, want %d", res.MemParentPages, tt.fromParent)
			}
			b, err := chunkstore.Open(out, chunkstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			got := readImage(t, b, "memory")
			exp := want
			if tt.fromParent == 0 {
				exp = ram // untouched pages read from RAM: zeros
			}
			if !bytes.Equal(got, exp) {
				t.Fatal("memory artifact differs from the clone's memory")
			}
		})
	}
}
