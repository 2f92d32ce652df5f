package chunkstore

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/format"
)

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed)})
	r.Read(b)
	return b
}

// repeated is an image whose pages repeat (dedup inside one pack).
func repeated() []byte {
	a, b := randomBytes(format.PageSize, 7), randomBytes(format.PageSize, 8)
	var out []byte
	for i := 0; i < 40; i++ {
		switch i % 4 {
		case 0, 3:
			out = append(out, a...)
		case 1:
			out = append(out, make([]byte, format.PageSize)...)
		default:
			out = append(out, b...)
		}
	}
	return out
}

func TestPackRoundTrip(t *testing.T) {
	sizes := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0x5a}},
		{"one zero byte", []byte{0}},
		{"page minus one", randomBytes(format.PageSize-1, 1)},
		{"one page", randomBytes(format.PageSize, 2)},
		{"partial last page", randomBytes(3*format.PageSize+17, 3)},
		{"all zero 1MiB", make([]byte, 1<<20)},
		{"random 1MiB", randomBytes(1<<20, 4)},
		{"repeated pages", repeated()},
		{"mixed 3MiB+123", sample(t, 3<<20+123, 5)},
	}
	kinds := []string{"memory", "kernel", "initrd", "state", "disk/root"}
	modes := []struct {
		name       string
		thin       bool
		framePages int
	}{
		{"self-contained/64", false, 64},
		{"self-contained/1", false, 1},
		{"thin/16", true, 16},
	}
	for _, mode := range modes {
		for i, sz := range sizes {
			kind := kinds[i%len(kinds)]
			t.Run(mode.name+"/"+kind+"/"+sz.name, func(t *testing.T) {
				dir := t.TempDir()
				in := writeFile(t, "in", sz.data)
				opts := PackOptions{Inputs: []PackInput{{Name: kind, Path: in}}, FramePages: mode.framePages}
				bopts := Options{}
				if mode.thin {
					s, err := OpenDir(filepath.Join(dir, "store"))
					if err != nil {
						t.Fatal(err)
					}
					opts.Store, bopts.StoreDir = s, s.Dir()
				}
				out := filepath.Join(dir, "b.smolmachine")
				res, err := Pack(ctxT(t), out, opts)
				if err != nil {
					t.Fatal(err)
				}
				if res.LogicalBytes != int64(len(sz.data)) {
					t.Fatalf("logical %d, want %d", res.LogicalBytes, len(sz.data))
				}
				b := openBundle(t, out, bopts)
				im, err := b.Image(kind)
				if err != nil {
					t.Fatal(err)
				}
				if im.Size() != int64(len(sz.data)) {
					t.Fatalf("size %d, want %d", im.Size(), len(sz.data))
				}
				if got := readAll(t, im); !bytes.Equal(got, sz.data) {
					t.Fatalf("ReadAt round trip differs")
				}
				checkRandomReads(t, im, sz.data)
				if _, err := b.Verify(ctxT(t), nil); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				// Extract to a sized file: bit-identical.
				xf, err := os.Create(filepath.Join(dir, "x"))
				if err != nil {
					t.Fatal(err)
				}
				defer xf.Close()
				if err := xf.Truncate(im.Size()); err != nil {
					t.Fatal(err)
				}
				if err := b.Extract(ctxT(t), kind, xf, nil); err != nil {
					t.Fatal(err)
				}
				if got, _ := os.ReadFile(xf.Name()); !bytes.Equal(got, sz.data) {
					t.Fatalf("Extract differs")
				}
			})
		}
	}
}

// checkRandomReads compares ReadAt at random offsets and lengths, and the
// io.EOF contract at the end.
func checkRandomReads(t *testing.T, im Image, want []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(len(want)), 2))
	for i := 0; i < 50 && len(want) > 0; i++ {
		off := r.IntN(len(want))
		n := 1 + r.IntN(3*format.PageSize)
		buf := make([]byte, n)
		got, err := im.ReadAt(buf, int64(off))
		wantN := min(n, len(want)-off)
		if got != wantN || !bytes.Equal(buf[:got], want[off:off+wantN]) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v: bytes differ", n, off, got, err)
		}
		if wantN < n && !errors.Is(err, io.EOF) {
			t.Fatalf("short read at end without io.EOF: %v", err)
		}
		if wantN == n && err != nil {
			t.Fatalf("full read: %v", err)
		}
	}
	if n, err := im.ReadAt(make([]byte, 1), im.Size()); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at size = %d, %v, want 0, io.EOF", n, err)
	}
	if _, err := im.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("ReadAt at -1 succeeded")
	}
}

// Several artifacts in one bundle share frames for shared pages.
func TestPackMultipleArtifacts(t *testing.T) {
	mem := sample(t, 2<<20, 11)
	disk := append(bytes.Clone(mem[:1<<20]), randomBytes(1<<20, 12)...)
	dir := t.TempDir()
	out := filepath.Join(dir, "b.smolmachine")
	res, err := Pack(ctxT(t), out, PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 2}},
		Inputs: []PackInput{{Name: "memory", Path: writeFile(t, "m", mem)}, {Name: "disk/root", Path: writeFile(t, "d", disk)},
			{Name: "kernel", Path: writeFile(t, "k", []byte("kernel"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReusedPages == 0 {
		t.Fatalf("disk shares 1 MiB with memory but no page was reused: %+v", res)
	}
	b := openBundle(t, out, Options{})
	for name, want := range map[string][]byte{"memory": mem, "disk/root": disk, "kernel": []byte("kernel")} {
		im, err := b.Image(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readAll(t, im), want) {
			t.Fatalf("%s differs", name)
		}
	}
	if _, err := b.Image("disk/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing artifact: %v", err)
	}
	if b.Manifest().Config.VCPUs != 2 {
		t.Fatalf("config lost: %+v", b.Manifest().Config)
	}
}

func TestPackRejects(t *testing.T) {
	in := writeFile(t, "in", []byte("x"))
	tests := []struct {
		name string
		opts PackOptions
	}{
		{"bad name", PackOptions{Inputs: []PackInput{{Name: "disk/", Path: in}}}},
		{"missing file", PackOptions{Inputs: []PackInput{{Name: "kernel", Path: in + ".none"}}}},
		{"frame pages", PackOptions{Inputs: []PackInput{{Name: "kernel", Path: in}}, FramePages: 5000}},
		{"duplicate artifact", PackOptions{Inputs: []PackInput{{Name: "kernel", Path: in}, {Name: "kernel", Path: in}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "b.smolmachine")
			if _, err := Pack(ctxT(t), out, tt.opts); err == nil {
				t.Fatal("Pack succeeded")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("failed pack left %d files in the output dir", len(ents))
			}
		})
	}
}

// A sparse input's holes are zero pages, skipped without reading; data
// around them, and a hole at the end, round-trip.
func TestPackSparseInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int64
		data map[int64][]byte
	}{
		{"data in the middle", 64 << 20, map[int64][]byte{8<<20 + 5: randomBytes(10000, 1), 40 << 20: randomBytes(format.PageSize, 2)}},
		{"hole at the end, partial last page", 16<<20 + 100, map[int64][]byte{0: []byte("head")}},
		{"data at the very end", 16<<20 + 100, map[int64][]byte{16<<20 + 90: []byte("tail!")}},
		{"all hole", 8 << 20, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "disk.img")
			f, err := os.Create(in)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tt.size)
			for off, b := range tt.data {
				f.WriteAt(b, off)
				copy(want[off:], b)
			}
			f.Truncate(tt.size)
			f.Close()
			out := filepath.Join(dir, "b")
			res, err := Pack(ctxT(t), out, PackOptions{Inputs: []PackInput{{Name: "disk/d", Path: in}}})
			if err != nil {
				t.Fatal(err)
			}
			b := openBundle(t, out, Options{})
			im, _ := b.Image("disk/d")
			if im.Size() != tt.size || !bytes.Equal(readAll(t, im), want) {
				t.Fatalf("sparse round trip differs (size %d, want %d)", im.Size(), tt.size)
			}
			if pages := (tt.size + format.PageSize - 1) / format.PageSize; res.ZeroPages+res.DataPages != pages {
				t.Fatalf("zero %d + data %d pages, want %d", res.ZeroPages, res.DataPages, pages)
			}
		})
	}
}
