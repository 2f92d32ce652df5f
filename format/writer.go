package format

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Writer streams a bundle: the header, then frames as they are added, then
// (Finish) the TOC, manifest and trailer. It never seeks, so it can write to
// a pipe or an upload. Not safe for concurrent use.
type Writer struct {
	w      io.Writer
	off    int64
	frames []FrameInfo
	index  map[Digest]int
	err    error
	done   bool
}

// NewWriter writes the header to w and returns a Writer.
func NewWriter(w io.Writer) (*Writer, error) {
	wr := &Writer{w: w, index: make(map[Digest]int)}
	h := make([]byte, HeaderSize)
	copy(h, Magic)
	binary.LittleEndian.PutUint16(h[8:], VersionMajor)
	binary.LittleEndian.PutUint16(h[10:], VersionMinor)
	if err := wr.write(h); err != nil {
		return nil, err
	}
	return wr, nil
}

func (w *Writer) write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("format: writing bundle at offset %d: %w", w.off, err)
	}
	return w.err
}

func checkPages(pages []Digest) error {
	if len(pages) < 1 || len(pages) > MaxFramePages {
		return fmt.Errorf("format: frame of %d pages (want 1..%d)", len(pages), MaxFramePages)
	}
	return nil
}

// AddFrame appends a compressed frame (EncodeFrame output) whose pages have
// the given digests and returns its index in the frame table. A frame whose
// digest is already in the table is not written again: its index is returned.
// The caller must not modify pages afterwards.
func (w *Writer) AddFrame(raw []byte, pages []Digest) (int, error) {
	if err := checkPages(pages); err != nil {
		return 0, err
	}
	d := FrameDigest(pages)
	if i, ok := w.index[d]; ok {
		return i, nil
	}
	if len(raw) == 0 || len(raw) > 1<<32-1 {
		return 0, fmt.Errorf("format: frame %s of %d compressed bytes", d, len(raw))
	}
	off := w.off
	if err := w.write(raw); err != nil {
		return 0, err
	}
	return w.add(FrameInfo{Digest: d, Offset: off, Length: int64(len(raw)), PageDigests: pages}), nil
}

// AddExternalFrame adds a frame held in a chunk store (a thin bundle): only
// its table entry is written. length is its compressed size in the store.
func (w *Writer) AddExternalFrame(length int64, pages []Digest) (int, error) {
	if err := checkPages(pages); err != nil {
		return 0, err
	}
	d := FrameDigest(pages)
	if i, ok := w.index[d]; ok {
		return i, nil
	}
	if length <= 0 || length > 1<<32-1 {
		return 0, fmt.Errorf("format: external frame %s of %d compressed bytes", d, length)
	}
	return w.add(FrameInfo{Digest: d, Length: length, External: true, PageDigests: pages}), nil
}

func (w *Writer) add(f FrameInfo) int {
	i := len(w.frames)
	w.frames = append(w.frames, f)
	w.index[f.Digest] = i
	return i
}

// FrameIndex returns the index of the frame with digest d, if added.
func (w *Writer) FrameIndex(d Digest) (int, bool) {
	i, ok := w.index[d]
	return i, ok
}

// Frame returns the table entry of frame i (0 <= i < Frames()).
func (w *Writer) Frame(i int) *FrameInfo { return &w.frames[i] }

// Frames is the number of frames added so far.
func (w *Writer) Frames() int { return len(w.frames) }

// Offset is the number of bytes written so far.
func (w *Writer) Offset() int64 { return w.off }

// Finish validates m against the frames added, then writes the TOC (with
// every artifact's extents), the manifest and the trailer. m.Format is set
// when empty. The Writer is unusable afterwards.
func (w *Writer) Finish(m *Manifest) (Trailer, error) {
	if w.done {
		return Trailer{}, errors.New("format: Finish called twice")
	}
	w.done = true
	if w.err != nil {
		return Trailer{}, w.err
	}
	if m.Format == "" {
		m.Format = ManifestFormat
	}
	if err := checkManifest(m); err != nil {
		return Trailer{}, fmt.Errorf("format: writing manifest: %w", err)
	}
	for i := range m.Artifacts {
		if err := checkExtents(&m.Artifacts[i], w.frames); err != nil {
			return Trailer{}, fmt.Errorf("format: writing manifest: %w", err)
		}
	}
	arts := slices.Clone(m.Artifacts)
	toc := marshalTOC(w.frames, arts)
	m.TOC = Digest(sha256.Sum256(toc)).String()
	man, err := json.Marshal(m)
	if err != nil {
		return Trailer{}, fmt.Errorf("format: encoding manifest: %w", err)
	}
	t := Trailer{
		TOCOffset: w.off, TOCLength: int64(len(toc)),
		ManifestOffset: w.off + int64(len(toc)), ManifestLength: int64(len(man)),
		TOCDigest: Digest(sha256.Sum256(toc)), ManifestDigest: sha256.Sum256(man),
		Major: VersionMajor, Minor: VersionMinor,
	}
	if t.ManifestLength > MaxManifestSize {
		return Trailer{}, fmt.Errorf("format: manifest of %d bytes exceeds %d", t.ManifestLength, MaxManifestSize)
	}
	for _, b := range [][]byte{toc, man, t.marshal()} {
		if err := w.write(b); err != nil {
			return Trailer{}, err
		}
	}
	return t, nil
}
