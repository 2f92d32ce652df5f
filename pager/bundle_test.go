package pager

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// packMemory packs a generated memory image of size bytes into a bundle and
// opens it; it returns the bundle and the raw image file.
func packMemory(t testing.TB, size int64) (*chunkstore.Bundle, string) {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "memory.raw")
	if err := sampleimage.WriteFile(raw, size, sampleimage.MemoryMix, 11); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vm.smolmachine")
	_, err := chunkstore.Pack(context.Background(), path, chunkstore.PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "amd64", VCPUs: 1, MemoryBytes: size}},
		Inputs:   []chunkstore.PackInput{{Name: "memory", Path: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := chunkstore.Open(path, chunkstore.Options{CacheBytes: 2 * size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, raw
}

// The pager serves a real packed bundle bit-identically.
func TestServeRealBundle(t *testing.T) {
	const size = 16 << 20
	b, raw := packMemory(t, size)
	sock := testServer(t, &Server{Open: b.Image})
	cfg := helperConfig{Socket: sock, Image: testImageConfig(size / PageSize), Source: raw, Pattern: "random", Threads: 4, Method: "direct", Split: true, Record: true}
	out := runClient(t, cfg, 60*time.Second)
	if out.code != exitOK {
		t.Fatalf("client exit %d\n%s", out.code, out.stderr)
	}
	st := out.res.Stats
	if st.PagesCopied+st.ZeroPages != size/PageSize {
		t.Errorf("filled %d+%d pages, want %d", st.PagesCopied, st.ZeroPages, size/PageSize)
	}
	// And again with the recorded working set prefetched.
	cfg.Record, cfg.Prefetch, cfg.WaitPrefetch = false, out.res.WorkingSet, true
	again := runClient(t, cfg, 60*time.Second)
	if again.code != exitOK {
		t.Fatalf("prefetch run: exit %d\n%s", again.code, again.stderr)
	}
	if again.res.Stats.Faults > st.Faults/20 {
		t.Errorf("faults with prefetch %d, without %d: want >= 95%% fewer", again.res.Stats.Faults, st.Faults)
	}
	t.Logf("without prefetch %+v\nwith prefetch %+v", st, again.res.Stats)
}

// mountBundle serves b over FUSE from this process; only children read it.
func mountBundle(t testing.TB, b *chunkstore.Bundle) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	fb, err := fusefs.FromChunkstore(b)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := fusefs.Mount(dir, fb, fusefs.Options{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Unmount(ctx); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return dir
}

// mmap mode: a MAP_PRIVATE mapping of the memory file on a FUSE mount of
// the bundle is bit-identical, with and without MADV_POPULATE_READ of a
// working set.
func TestMmapThroughMount(t *testing.T) {
	const size = 16 << 20
	b, raw := packMemory(t, size)
	dir := mountBundle(t, b)
	half := &WorkingSet{Version: 1, PageSize: PageSize, Ranges: []PageRange{{Artifact: "memory", Page: 0, Count: size / PageSize / 2}}}
	for _, tt := range []struct {
		name     string
		populate *WorkingSet
	}{{"demand", nil}, {"populate half", half}} {
		t.Run(tt.name, func(t *testing.T) {
			out := runClient(t, helperConfig{Mode: "mmap", MapPath: filepath.Join(dir, "memory"), Image: testImageConfig(size / PageSize),
				Source: raw, Pattern: "random", Threads: 4, Populate: tt.populate}, 60*time.Second)
			if out.code != exitOK {
				t.Fatalf("mmap child exit %d\n%s", out.code, out.stderr)
			}
			if out.res.Touched != size/PageSize {
				t.Errorf("touched %d pages, want %d", out.res.Touched, size/PageSize)
			}
		})
	}
}

func TestMapFileErrors(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m")
	if err := os.WriteFile(f, make([]byte, 3*PageSize), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		path        string
		off, length int64
		wantErr     bool
		wantLen     int
	}{
		{"whole file", f, 0, 0, false, 3 * PageSize},
		{"from page 1", f, PageSize, 0, false, 2 * PageSize},
		{"unaligned offset", f, 100, 0, true, 0},
		{"past the end", f, 3 * PageSize, 0, true, 0},
		{"missing file", f + ".no", 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := MapFile(tt.path, tt.off, tt.length)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer m.Close()
			if len(m.Mem) != tt.wantLen {
				t.Fatalf("mapped %d bytes, want %d", len(m.Mem), tt.wantLen)
			}
			m.Mem[0] = 1 // private: the file keeps its zeros
			if err := m.Populate(&WorkingSet{Ranges: []PageRange{{Artifact: "memory", Page: 0, Count: 9}}}, "memory", 0, PopulateRead); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(f)
			if b[tt.off] != 0 {
				t.Fatal("a write to the private mapping reached the file")
			}
		})
	}
}
