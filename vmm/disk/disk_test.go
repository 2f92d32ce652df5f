package disk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func makeImage(t *testing.T, size int) (string, []byte) {
	t.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
		err  bool
	}{{"", ModeRW, false}, {"rw", ModeRW, false}, {"RO", ModeRO, false}, {"cow", ModeCOW, false}, {"snap", "", true}} {
		m, err := ParseMode(tc.in)
		if m != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseMode(%q) = %q, %v", tc.in, m, err)
		}
	}
}

func TestFileModes(t *testing.T) {
	p, data := makeImage(t, 8192)
	rw, err := Open(p, ModeRW, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := rw.WriteAt([]byte("hello"), 100); err != nil {
		t.Fatal(err)
	}
	if err := rw.Flush(); err != nil {
		t.Fatal(err)
	}
	copy(data[100:], "hello")
	if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
		t.Fatal("rw write did not land in the image")
	}
	ro, err := Open(p, ModeRO, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.WriteAt([]byte("x"), 0); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("ro write: %v", err)
	}
	buf := make([]byte, 10)
	for _, off := range []int64{-1, 8190, 9000} {
		if _, err := ro.ReadAt(buf, off); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	if _, err := Open(p, ModeCOW, ""); !errors.Is(err, ErrMode) {
		t.Fatalf("cow without overlay: %v", err)
	}
}

func TestOverlayNeverWritesBaseAndMerges(t *testing.T) {
	for _, bs := range []uint32{512, 4096, 65536} {
		t.Run("", func(t *testing.T) {
			const size = 300_000 // not a multiple of any block size
			p, model := makeImage(t, size)
			before := fileHash(t, p)
			ovPath := filepath.Join(t.TempDir(), "vda.overlay")
			base, err := OpenFile(p, true)
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			o, err := OpenOverlay(base, size, ovPath, OverlayOptions{BlockSize: bs})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			writes := []struct{ off, n int }{{0, 4096}, {5, 3}, {4000, 9000}, {size - 7, 7}, {size - 70000, 1}, {123456, 65536}}
			for i := range 40 {
				writes = append(writes, struct{ off, n int }{r.IntN(size - 1), 1 + r.IntN(20000)})
				if w := &writes[len(writes)-1]; w.off+w.n > size {
					w.n = size - w.off
				}
				_ = i
			}
			for _, w := range writes {
				b := make([]byte, w.n)
				for i := range b {
					b[i] = byte(r.Uint32())
				}
				if _, err := o.WriteAt(b, int64(w.off)); err != nil {
					t.Fatal(err)
				}
				copy(model[w.off:], b)
			}
			check := func(d Disk) {
				t.Helper()
				got := make([]byte, size)
				if _, err := d.ReadAt(got, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, model) {
					t.Fatal("merged read differs from the model")
				}
				for range 50 { // unaligned reads across base/overlay boundaries
					off, n := r.IntN(size), 1+r.IntN(30000)
					n = min(n, size-off)
					if _, err := d.ReadAt(got[:n], int64(off)); err != nil || !bytes.Equal(got[:n], model[off:off+n]) {
						t.Fatalf("read [%d,+%d): %v", off, n, err)
					}
				}
			}
			check(o)
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if fileHash(t, p) != before {
				t.Fatal("the base image changed")
			}
			o2, err := OpenOverlay(base, size, ovPath, OverlayOptions{BlockSize: 2 * bs}) // ignored: the map's own block size wins
			if err != nil {
				t.Fatal(err)
			}
			defer o2.Close()
			if o2.BlockSize() != bs {
				t.Fatalf("reopened block size %d, want %d", o2.BlockSize(), bs)
			}
			check(o2)
		})
	}
}

// The overlay can be read without this package's Overlay: the map names the
// blocks and the data file holds them at their disk offsets (docs/DISK.md).
func TestOverlayLayoutReadableOnItsOwn(t *testing.T) {
	p, _ := makeImage(t, 64<<10)
	ovPath := filepath.Join(t.TempDir(), "ov")
	d, err := Open(p, ModeCOW, ovPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(bytes.Repeat([]byte{0xaa}, 10), 3*4096+5); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(ovPath + MapSuffix)
	if string(raw[:8]) != "SMOLCOW1" || raw[mapHeaderSize] != 1<<3 || len(raw) != mapHeaderSize+2+4 {
		t.Fatalf("map file % x", raw)
	}
	data, _ := os.ReadFile(ovPath)
	if len(data) != 64<<10 || !bytes.Equal(data[3*4096+5:3*4096+15], bytes.Repeat([]byte{0xaa}, 10)) {
		t.Fatal("overlay data not at its disk offset")
	}
	base, _ := os.ReadFile(p)
	if !bytes.Equal(data[3*4096:3*4096+5], base[3*4096:3*4096+5]) {
		t.Fatal("copy-up did not bring the rest of the block")
	}
}

func TestOverlayCrashKeepsOnlyFlushedBlocks(t *testing.T) {
	p, model := makeImage(t, 32<<10)
	ovPath := filepath.Join(t.TempDir(), "ov")
	o, err := Open(p, ModeCOW, ovPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("flushed"), 0); err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.WriteAt([]byte("lost"), 8192); err != nil {
		t.Fatal(err)
	}
	// Crash: no Flush, no Close; a new process opens the files.
	o2, err := Open(p, ModeCOW, ovPath)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	got := make([]byte, 7)
	o2.ReadAt(got, 0)
	if string(got) != "flushed" {
		t.Fatalf("flushed write reads %q", got)
	}
	o2.ReadAt(got[:4], 8192)
	if !bytes.Equal(got[:4], model[8192:8196]) {
		t.Fatalf("unflushed block reads %q, want the base's bytes", got[:4])
	}
	o.(*Overlay).data.Close()
}

func TestOverlayRejectsDamage(t *testing.T) {
	p, _ := makeImage(t, 16<<10)
	for _, tc := range []struct {
		name string
		mod  func(ov string)
	}{
		{"flipped bit", func(ov string) {
			b, _ := os.ReadFile(ov + MapSuffix)
			b[mapHeaderSize] ^= 1
			os.WriteFile(ov+MapSuffix, b, 0o600)
		}},
		{"truncated", func(ov string) {
			b, _ := os.ReadFile(ov + MapSuffix)
			os.WriteFile(ov+MapSuffix, b[:len(b)-1], 0o600)
		}},
		{"bad magic", func(ov string) {
			b, _ := os.ReadFile(ov + MapSuffix)
			b[0] = 'X'
			os.WriteFile(ov+MapSuffix, b, 0o600)
		}},
		{"short data file", func(ov string) { os.Truncate(ov, 100) }},
		{"other base size", func(ov string) { os.Truncate(p, 8<<10) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ov := filepath.Join(t.TempDir(), "ov")
			d, err := Open(p, ModeCOW, ov)
			if err != nil {
				t.Fatal(err)
			}
			d.WriteAt([]byte("x"), 0)
			d.Close()
			tc.mod(ov)
			if d, err := Open(p, ModeCOW, ov); !errors.Is(err, ErrCorrupt) {
				if d != nil {
					d.Close()
				}
				t.Fatalf("open: %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecodeBlockMap(f *testing.F) {
	m := newBlockMap(100_000, 4096)
	m.set(3)
	f.Add(m.encode())
	f.Add([]byte("SMOLCOW1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeBlockMap("fuzz", b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(m.encode(), b) {
			t.Fatal("decoded map does not re-encode to the same bytes")
		}
	})
}
