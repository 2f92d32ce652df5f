package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// testPages returns n pages of mixed content (deterministic).
func testPages(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n*PageSize)
	for i := 0; i < n; i++ {
		p := b[i*PageSize : (i+1)*PageSize]
		switch i % 3 {
		case 0:
			for j := range p {
				p[j] = byte(r.UintN(256))
			}
		case 1:
			copy(p, bytes.Repeat([]byte("smolvm page text "), PageSize/16))
			p[0] = byte(i)
		default:
			p[i%PageSize] = 1
		}
	}
	return b
}

func pageDigests(b []byte) []Digest {
	ds := make([]Digest, len(b)/PageSize)
	for i := range ds {
		ds[i] = PageDigest(b[i*PageSize:])
	}
	return ds
}

type testBundle struct {
	file   []byte
	frames [][]byte // decompressed content per frame index
	m      Manifest
}

// buildBundle writes a bundle with two internal frames, one external frame,
// and artifacts using them.
func buildBundle(t testing.TB) *testBundle {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tb := &testBundle{}
	for i, n := range []int{3, 5} {
		data := testPages(n, uint64(i))
		idx, err := w.AddFrame(EncodeFrame(nil, data), pageDigests(data))
		if err != nil || idx != i {
			t.Fatalf("AddFrame %d: idx %d err %v", i, idx, err)
		}
		tb.frames = append(tb.frames, data)
	}
	ext := testPages(2, 9)
	if idx, err := w.AddExternalFrame(1234, pageDigests(ext)); err != nil || idx != 2 {
		t.Fatalf("AddExternalFrame: %d %v", idx, err)
	}
	tb.frames = append(tb.frames, ext)
	tb.m = Manifest{
		Config: Config{Arch: "x86_64", VCPUs: 2, MemoryBytes: 1 << 20, Cmdline: "console=ttyS0",
			Devices: []Device{{Kind: "virtio-blk", Name: "root", Artifact: "disk/root"}}},
		Artifacts: []Artifact{
			{Name: "memory", Size: 20 * PageSize, Extents: []Extent{{Page: 1, Count: 3, Frame: 0, Slot: 0}, {Page: 10, Count: 2, Frame: 1, Slot: 3}}},
			{Name: "disk/root", Size: 2*PageSize + 7, Extents: []Extent{{Page: 0, Count: 2, Frame: 2, Slot: 0}}},
			{Name: "kernel", Size: 0},
			{Name: "state", Size: 100, Extents: []Extent{{Page: 0, Count: 1, Frame: 1, Slot: 0}}},
		},
		State:      "state",
		WorkingSet: []PageRange{{Page: 1, Count: 3}},
	}
	m := tb.m
	if _, err := w.Finish(&m); err != nil {
		t.Fatal(err)
	}
	tb.file = buf.Bytes()
	return tb
}

func TestRoundTrip(t *testing.T) {
	tb := buildBundle(t)
	r, err := Open(bytes.NewReader(tb.file), int64(len(tb.file)))
	if err != nil {
		t.Fatal(err)
	}
	m := r.Manifest()
	if m.Format != ManifestFormat || m.Config.Cmdline != "console=ttyS0" || m.State != "state" || len(m.WorkingSet) != 1 {
		t.Fatalf("manifest = %+v", m)
	}
	if len(m.Artifacts) != len(tb.m.Artifacts) {
		t.Fatalf("%d artifacts, want %d", len(m.Artifacts), len(tb.m.Artifacts))
	}
	for i, a := range tb.m.Artifacts {
		got := m.Artifacts[i]
		if got.Name != a.Name || got.Size != a.Size || len(got.Extents) != len(a.Extents) {
			t.Fatalf("artifact %d = %+v, want %+v", i, got, a)
		}
		for j := range a.Extents {
			if got.Extents[j] != a.Extents[j] {
				t.Errorf("%s extent %d = %v, want %v", a.Name, j, got.Extents[j], a.Extents[j])
			}
		}
	}
	for i, want := range tb.frames {
		f := r.Frame(i)
		raw, err := r.ReadRaw(i, nil)
		if f.External {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("external frame %d: ReadRaw err %v, want ErrNotFound", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeFrame(f, raw, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: err %v, equal %v", i, err, bytes.Equal(got, want))
		}
	}
	s := r.Stats()
	if s.LogicalBytes != 20*PageSize+2*PageSize+7+100 || s.DataPages != 3+2+2+1 || s.Frames != 3 || s.ExternalFrames != 1 {
		t.Errorf("stats = %+v", s)
	}
	if e, ok := m.Artifact("memory").Locate(11); !ok || e.Page != 10 {
		t.Errorf("Locate(11) = %v %v", e, ok)
	}
	if _, ok := m.Artifact("memory").Locate(4); ok {
		t.Errorf("Locate(4) found a zero page")
	}
}

// rewriteTrailer patches the trailer with fn and fixes its checksum, so a
// test reaches the checks behind the CRC.
func rewriteTrailer(b []byte, fn func(tr []byte)) []byte {
	b = bytes.Clone(b)
	tr := b[len(b)-TrailerSize:]
	fn(tr)
	binary.LittleEndian.PutUint32(tr[116:], crc32c(tr[:116]))
	return b
}

func TestOpenRejects(t *testing.T) {
	good := buildBundle(t).file
	n := len(good)
	tr := n - TrailerSize
	le := binary.LittleEndian
	tocOff := int(le.Uint64(good[tr:]))
	manOff := int(le.Uint64(good[tr+16:]))
	flip := func(off int) []byte { b := bytes.Clone(good); b[off] ^= 0x40; return b }
	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"tiny", good[:HeaderSize+TrailerSize-1], ErrTruncated},
		{"cut by one", good[:n-1], ErrTruncated},
		{"cut in half", good[:n/2], ErrTruncated},
		{"header magic", flip(0), ErrBadMagic},
		{"header flags", flip(12), ErrCorrupt},
		{"header minor", flip(10), ErrCorrupt},
		{"trailer magic (reads as cut off)", flip(n - 1), ErrTruncated},
		{"not a bundle", bytes.Repeat([]byte("x"), 500), ErrBadMagic},
		{"trailer crc", flip(tr + 117), ErrCorrupt},
		{"trailer offset bit", flip(tr + 1), ErrCorrupt},
		{"newer major", rewriteTrailer(good, func(b []byte) { le.PutUint16(b[108:], 2) }), ErrVersion},
		{"major zero", rewriteTrailer(good, func(b []byte) { le.PutUint16(b[108:], 0) }), ErrVersion},
		{"toc out of file", rewriteTrailer(good, func(b []byte) { le.PutUint64(b[0:], 1<<40) }), ErrCorrupt},
		{"toc length huge", rewriteTrailer(good, func(b []byte) { le.PutUint64(b[8:], 1<<62) }), ErrCorrupt},
		{"manifest length huge", rewriteTrailer(good, func(b []byte) { le.PutUint64(b[24:], 1<<63-1) }), ErrCorrupt},
		{"toc byte", flip(tocOff + 20), ErrCorrupt},
		{"manifest byte", flip(manOff + 3), ErrCorrupt},
		{"toc digest", flip(tr + 40), ErrCorrupt},
		{"manifest digest", flip(tr + 70), ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tt.file), int64(len(tt.file)))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
		})
	}
}

// Every truncation of a bundle fails to open with a sentinel error, and
// every single-byte change outside the frame data is detected.
func TestOpenEveryTruncationAndMetadataByte(t *testing.T) {
	good := buildBundle(t).file
	sentinel := func(err error) bool {
		return errors.Is(err, ErrTruncated) || errors.Is(err, ErrBadMagic) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrVersion)
	}
	for n := 0; n < len(good); n++ {
		if _, err := Open(bytes.NewReader(good[:n]), int64(n)); !sentinel(err) {
			t.Fatalf("truncated to %d bytes: err %v", n, err)
		}
	}
	tocOff := int(binary.LittleEndian.Uint64(good[len(good)-TrailerSize:]))
	for off := 0; off < len(good); off++ {
		if off >= HeaderSize && off < tocOff {
			continue // frame data: checked when frames are read
		}
		b := bytes.Clone(good)
		b[off] ^= 0x01
		if _, err := Open(bytes.NewReader(b), int64(len(b))); !sentinel(err) {
			t.Fatalf("byte %d flipped: err %v", off, err)
		}
	}
}

// Any change to a frame's compressed bytes is caught by DecodeFrame.
func TestDecodeFrameCorrupt(t *testing.T) {
	data := testPages(6, 3)
	f := &FrameInfo{PageDigests: pageDigests(data)}
	f.Digest = FrameDigest(f.PageDigests)
	raw := EncodeFrame(nil, data)
	if got, err := DecodeFrame(f, raw, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("clean frame: %v", err)
	}
	for off := range raw {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(raw)
			b[off] ^= mask
			got, err := DecodeFrame(f, b, nil)
			if err == nil {
				if bytes.Equal(got, data) {
					continue // a flip zstd ignores changes nothing the guest sees
				}
				t.Fatalf("byte %d ^%#x: wrong bytes without an error", off, mask)
			}
			var fe *FrameError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &fe) || fe.Expected != f.Digest {
				t.Fatalf("byte %d: err %v", off, err)
			}
		}
	}
	if _, err := DecodeFrame(f, raw[:len(raw)/2], nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("half frame: %v", err)
	}
}

func TestPageDigestPadding(t *testing.T) {
	short := []byte("abc")
	full := make([]byte, PageSize)
	copy(full, short)
	if PageDigest(short) != PageDigest(full) || PageDigest(full) != Digest(sha256.Sum256(full)) {
		t.Fatal("a short page must hash as its zero-padded page")
	}
	if !IsZero(make([]byte, 3*PageSize+5)) || IsZero(full) {
		t.Fatal("IsZero")
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		m    Manifest
	}{
		{"bad name", Manifest{Artifacts: []Artifact{{Name: "disk/../x", Size: 1}}}},
		{"duplicate", Manifest{Artifacts: []Artifact{{Name: "kernel"}, {Name: "kernel"}}}},
		{"extent beyond size", Manifest{Artifacts: []Artifact{{Name: "memory", Size: PageSize, Extents: []Extent{{Page: 0, Count: 2}}}}}},
		{"extent bad frame", Manifest{Artifacts: []Artifact{{Name: "memory", Size: PageSize, Extents: []Extent{{Page: 0, Count: 1, Frame: 5}}}}}},
		{"overlap", Manifest{Artifacts: []Artifact{{Name: "memory", Size: 9 * PageSize, Extents: []Extent{{Page: 0, Count: 2}, {Page: 1, Count: 1}}}}}},
		{"missing state", Manifest{State: "state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := NewWriter(&bytes.Buffer{})
			data := testPages(2, 1)
			if _, err := w.AddFrame(EncodeFrame(nil, data), pageDigests(data)); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Finish(&tt.m); err == nil {
				t.Fatal("Finish accepted a bad manifest")
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	good := buildBundle(f).file
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[len(good)/2:])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		r.Stats()
		for _, a := range r.Manifest().Artifacts {
			for p := int64(0); p < min(a.Pages(), 64); p++ {
				a.Locate(p)
			}
		}
		for i := range r.Frames() {
			if raw, err := r.ReadRaw(i, nil); err == nil {
				DecodeFrame(r.Frame(i), raw, nil)
			}
		}
	})
}
