package chunkstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// mutableReader is an io.ReaderAt over bytes a test can change between
// reads (a fake bundle file).
type mutableReader struct {
	mu sync.Mutex
	b  []byte
}

func (m *mutableReader) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.NewReader(m.b).ReadAt(p, off)
}

func (m *mutableReader) flip(off int64) {
	m.mu.Lock()
	m.b[off] ^= 0x20
	m.mu.Unlock()
}

// smallBundle packs a small mixed image with tiny frames and returns the
// bundle bytes and the image.
func smallBundle(t *testing.T, size int64, framePages int) ([]byte, []byte) {
	var buf bytes.Buffer
	if err := sampleimage.Write(&buf, size, sampleimage.Mix{Text: 1}, 21); err != nil {
		t.Fatal(err)
	}
	img := buf.Bytes()
	out := filepath.Join(t.TempDir(), "b.smolmachine")
	if _, err := Pack(ctxT(t), out, PackOptions{Inputs: []PackInput{{Name: "memory", Path: writeFile(t, "m", img)}}, FramePages: framePages}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, img
}

// Changing any byte of frame data makes Verify fail naming that frame,
// or (for a change zstd ignores) leaves every byte read identical.
func TestVerifyEveryFrameByte(t *testing.T) {
	file, img := smallBundle(t, 12*format.PageSize, 3)
	r, err := format.Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	frames := r.Frames()
	if len(frames) < 3 {
		t.Fatalf("want several frames, got %d", len(frames))
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	benign := 0
	for fi := range frames {
		f := &frames[fi]
		for off := f.Offset; off < f.Offset+f.Length; off += int64(step) {
			mr := &mutableReader{b: bytes.Clone(file)}
			mr.flip(off)
			b, err := OpenReader(mr, int64(len(file)), Options{CacheBytes: -1})
			if err != nil {
				t.Fatalf("byte %d: Open: %v", off, err)
			}
			_, verr := b.Verify(ctxT(t), nil)
			if verr == nil {
				im, _ := b.Image("memory")
				if !bytes.Equal(readAll(t, im), img) {
					t.Fatalf("byte %d of frame %d changed: Verify passed but the image differs", off, fi)
				}
				benign++
				continue
			}
			var ce *CorruptError
			if !errors.Is(verr, ErrCorrupt) || !errors.As(verr, &ce) || ce.Frame != fi || ce.Artifact != "memory" {
				t.Fatalf("byte %d of frame %d: Verify error %v does not name frame %d of memory", off, fi, verr, fi)
			}
			if exp, _, ok := ce.Digests(); !ok || exp != f.Digest {
				t.Fatalf("byte %d: error does not carry the expected digest: %v", off, verr)
			}
		}
	}
	t.Logf("%d frames, %d bytes of frame data, %d flips zstd ignored (content intact)", len(frames), r.Trailer().TOCOffset-format.HeaderSize, benign)
}

// A corrupt frame fails ReadAt with a CorruptError; once the bytes are
// good again the next read succeeds (failures are not cached).
func TestReadAtCorruptThenRepaired(t *testing.T) {
	file, img := smallBundle(t, 32*format.PageSize, 8)
	mr := &mutableReader{b: bytes.Clone(file)}
	b, err := OpenReader(mr, int64(len(file)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	im, _ := b.Image("memory")
	e, ok := im.Locate(0)
	if !ok {
		t.Fatal("page 0 is zero")
	}
	f := b.Format().Frame(int(e.Frame))
	mid := f.Offset + f.Length/2
	mr.flip(mid)
	buf := make([]byte, 100)
	_, err = im.ReadAt(buf, 10)
	var ce *CorruptError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Artifact != "memory" || ce.Frame != int(e.Frame) {
		t.Fatalf("ReadAt of a corrupt frame: %v", err)
	}
	if s := b.Stats(); s.VerifyFailures != 1 {
		t.Fatalf("verify failures = %d, want 1", s.VerifyFailures)
	}
	mr.flip(mid) // repaired
	if _, err := im.ReadAt(buf, 10); err != nil || !bytes.Equal(buf, img[10:110]) {
		t.Fatalf("after repair: %v", err)
	}
}

// Reading zero pages fetches nothing.
func TestZeroReadsFetchNothing(t *testing.T) {
	img := make([]byte, 64*format.PageSize)
	copy(img[40*format.PageSize:], randomBytes(3*format.PageSize, 1))
	out := filepath.Join(t.TempDir(), "b")
	if _, err := Pack(ctxT(t), out, PackOptions{Inputs: []PackInput{{Name: "memory", Path: writeFile(t, "m", img)}}}); err != nil {
		t.Fatal(err)
	}
	b := openBundle(t, out, Options{})
	im, _ := b.Image("memory")
	buf := make([]byte, 40*format.PageSize)
	if n, err := im.ReadAt(buf, 0); err != nil || n != len(buf) || !format.IsZero(buf) {
		t.Fatalf("zero read: %d %v", n, err)
	}
	if s := b.Stats(); s.FramesFetched != 0 || s.ZeroBytes != int64(len(buf)) {
		t.Fatalf("zero read fetched: %+v", s)
	}
	if _, err := im.ReadAt(buf[:10], 40*format.PageSize); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.FramesFetched != 1 {
		t.Fatalf("data read: %+v", s)
	}
}

func TestOpenTruncatedBundle(t *testing.T) {
	file, _ := smallBundle(t, 16*format.PageSize, 4)
	for _, n := range []int{0, 10, len(file) / 2, len(file) - 1} {
		p := writeFile(t, "cut", file[:n])
		if _, err := Open(p, Options{}); !errors.Is(err, format.ErrTruncated) {
			t.Errorf("truncated to %d: %v, want ErrTruncated", n, err)
		}
	}
}
