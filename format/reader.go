package format

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Reader is an opened bundle: its trailer, frame table and manifest, all
// checked. It reads frame bytes on demand from an io.ReaderAt (a local file,
// or HTTP range requests). Safe for concurrent use.
type Reader struct {
	r        io.ReaderAt
	size     int64
	trailer  Trailer
	frames   []FrameInfo
	index    map[Digest]int
	manifest Manifest
}

// Open reads and checks a bundle of size bytes from r, starting at its tail:
// trailer, then TOC and manifest (each checked against its SHA-256 in the
// trailer), then the header. It reads no frame data. Errors wrap ErrBadMagic,
// ErrVersion, ErrTruncated or ErrCorrupt.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	if size < HeaderSize+TrailerSize {
		return nil, fmt.Errorf("format: %w: %d bytes, a bundle has at least %d", ErrTruncated, size, HeaderSize+TrailerSize)
	}
	tb := make([]byte, TrailerSize)
	if err := readFull(r, tb, size-TrailerSize, "trailer"); err != nil {
		return nil, err
	}
	if string(tb[120:]) != TrailerMagic {
		// Tell a cut-off bundle from something that is not a bundle.
		hb := make([]byte, HeaderSize)
		if readFull(r, hb, 0, "header") == nil && string(hb[:8]) == Magic {
			return nil, fmt.Errorf("format: %w: file of %d bytes has a bundle header but no trailer at its end (cut off?)", ErrTruncated, size)
		}
	}
	t, err := parseTrailer(tb, size)
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	hb := make([]byte, HeaderSize)
	if err := readFull(r, hb, 0, "header"); err != nil {
		return nil, err
	}
	if string(hb[:8]) != Magic {
		return nil, fmt.Errorf("format: %w: header magic %q, want %q", ErrBadMagic, hb[:8], Magic)
	}
	le := binary.LittleEndian
	if major, minor := le.Uint16(hb[8:]), le.Uint16(hb[10:]); major != t.Major || minor != t.Minor {
		return nil, fmt.Errorf("format: %w: header says version %d.%d, trailer %d.%d", ErrCorrupt, major, minor, t.Major, t.Minor)
	}
	if flags := le.Uint32(hb[12:]); flags != 0 {
		return nil, fmt.Errorf("format: %w: header flags %#x, want 0", ErrCorrupt, flags)
	}
	body := make([]byte, t.TOCLength+t.ManifestLength)
	if err := readFull(r, body, t.TOCOffset, "TOC and manifest"); err != nil {
		return nil, err
	}
	toc, man := body[:t.TOCLength], body[t.TOCLength:]
	if got := Digest(sha256.Sum256(toc)); got != t.TOCDigest {
		return nil, fmt.Errorf("format: %w: TOC at offset %d: expected %s, got %s", ErrCorrupt, t.TOCOffset, t.TOCDigest, got)
	}
	if got := Digest(sha256.Sum256(man)); got != t.ManifestDigest {
		return nil, fmt.Errorf("format: %w: manifest at offset %d: expected %s, got %s", ErrCorrupt, t.ManifestOffset, t.ManifestDigest, got)
	}
	frames, exts, err := parseTOC(toc, t.TOCOffset)
	if err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	br := &Reader{r: r, size: size, trailer: t, frames: frames, index: make(map[Digest]int, len(frames))}
	// Unknown fields are ignored: a later minor version may add some.
	if err := json.Unmarshal(man, &br.manifest); err != nil {
		return nil, fmt.Errorf("format: %w: manifest JSON: %v", ErrCorrupt, err)
	}
	m := &br.manifest
	if err := checkManifest(m); err != nil {
		return nil, fmt.Errorf("format: %w", err)
	}
	if m.TOC != t.TOCDigest.String() {
		return nil, fmt.Errorf("format: %w: manifest names TOC %s, the trailer's TOC is %s", ErrCorrupt, m.TOC, t.TOCDigest)
	}
	if len(exts) != len(m.Artifacts) {
		return nil, fmt.Errorf("format: %w: TOC lists %d artifacts, manifest %d", ErrCorrupt, len(exts), len(m.Artifacts))
	}
	for i := range m.Artifacts {
		a := &m.Artifacts[i]
		es, ok := exts[a.Name]
		if !ok {
			return nil, fmt.Errorf("format: %w: artifact %q has no extents in the TOC", ErrCorrupt, a.Name)
		}
		a.Extents = es
		if err := checkExtents(a, frames); err != nil {
			return nil, fmt.Errorf("format: %w", err)
		}
	}
	for i := range frames {
		if _, dup := br.index[frames[i].Digest]; dup {
			return nil, fmt.Errorf("format: %w: frame %d (%s) is listed twice", ErrCorrupt, i, frames[i].Digest)
		}
		br.index[frames[i].Digest] = i
	}
	return br, nil
}

func readFull(r io.ReaderAt, b []byte, off int64, what string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("format: %w: %s at offset %d: read %d of %d bytes", ErrTruncated, what, off, n, len(b))
	}
	return fmt.Errorf("format: reading %s at offset %d: %w", what, off, err)
}

// Size is the bundle's length in bytes.
func (r *Reader) Size() int64 { return r.size }

// Trailer returns the bundle's trailer.
func (r *Reader) Trailer() Trailer { return r.trailer }

// ManifestDigest is the SHA-256 of the manifest's JSON bytes: the bundle's
// identity.
func (r *Reader) ManifestDigest() Digest { return r.trailer.ManifestDigest }

// Manifest returns the manifest with every artifact's extents. Callers must
// not modify it.
func (r *Reader) Manifest() *Manifest { return &r.manifest }

// Artifact returns the named artifact, or an error wrapping ErrNotFound.
func (r *Reader) Artifact(name string) (*Artifact, error) {
	if a := r.manifest.Artifact(name); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("format: artifact %q: %w", name, ErrNotFound)
}

// Frames returns the frame table. Callers must not modify it.
func (r *Reader) Frames() []FrameInfo { return r.frames }

// Frame returns frame i's entry.
func (r *Reader) Frame(i int) *FrameInfo { return &r.frames[i] }

// FrameIndex returns the index of the frame with digest d.
func (r *Reader) FrameIndex(d Digest) (int, bool) {
	i, ok := r.index[d]
	return i, ok
}

// ReadRaw reads frame i's compressed bytes from the bundle into dst (reused
// when large enough). They are not verified: pass them to DecodeFrame. An
// external frame gives an error wrapping ErrNotFound.
func (r *Reader) ReadRaw(i int, dst []byte) ([]byte, error) {
	if i < 0 || i >= len(r.frames) {
		return nil, fmt.Errorf("format: frame %d: %w (bundle has %d)", i, ErrNotFound, len(r.frames))
	}
	f := &r.frames[i]
	if f.External {
		return nil, fmt.Errorf("format: frame %d (%s) is external (in a chunk store): %w", i, f.Digest, ErrNotFound)
	}
	if cap(dst) < int(f.Length) {
		dst = make([]byte, f.Length)
	}
	dst = dst[:f.Length]
	if err := readFull(r.r, dst, f.Offset, fmt.Sprintf("frame %d (%s)", i, f.Digest)); err != nil {
		return nil, err
	}
	return dst, nil
}
