package format

import (
	"encoding/binary"
	"fmt"
)

// The TOC is binary (docs/FORMAT.md "Table of contents"):
//
//	magic "SMOLTOC1" | u32 frames | frame records | u32 artifacts | artifact records
//	frame:    digest[32] | u64 offset | u32 length | u16 pages | u16 flags | pages × digest[32]
//	artifact: u16 name length | name | u64 extents | extents × (i64 page | i32 count | i32 frame | i32 slot)
//
// All integers little-endian.

func marshalTOC(frames []FrameInfo, arts []Artifact) []byte {
	n := len(TOCMagic) + 8
	for i := range frames {
		n += frameRecordFixed + 32*frames[i].Pages()
	}
	for i := range arts {
		n += 2 + len(arts[i].Name) + 8 + extentRecordSize*len(arts[i].Extents)
	}
	b := make([]byte, 0, n)
	le := binary.LittleEndian
	b = append(b, TOCMagic...)
	b = le.AppendUint32(b, uint32(len(frames)))
	for i := range frames {
		f := &frames[i]
		b = append(b, f.Digest[:]...)
		b = le.AppendUint64(b, uint64(f.Offset))
		b = le.AppendUint32(b, uint32(f.Length))
		b = le.AppendUint16(b, uint16(f.Pages()))
		var flags uint16
		if f.External {
			flags |= FlagExternal
		}
		b = le.AppendUint16(b, flags)
		for _, d := range f.PageDigests {
			b = append(b, d[:]...)
		}
	}
	b = le.AppendUint32(b, uint32(len(arts)))
	for i := range arts {
		a := &arts[i]
		b = le.AppendUint16(b, uint16(len(a.Name)))
		b = append(b, a.Name...)
		b = le.AppendUint64(b, uint64(len(a.Extents)))
		for _, e := range a.Extents {
			b = le.AppendUint64(b, uint64(e.Page))
			b = le.AppendUint32(b, uint32(e.Count))
			b = le.AppendUint32(b, uint32(e.Frame))
			b = le.AppendUint32(b, uint32(e.Slot))
		}
	}
	return b
}

// tocReader walks the TOC bytes; every read checks the remaining length so a
// count can never make it allocate more than the TOC itself holds.
type tocReader struct {
	b   []byte
	off int
	err error
}

func (r *tocReader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = corruptf("TOC: %s at TOC offset %d needs %d bytes, %d left", what, r.off, n, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *tocReader) u16(what string) uint16 {
	if s := r.take(2, what); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *tocReader) u32(what string) uint32 {
	if s := r.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *tocReader) u64(what string) uint64 {
	if s := r.take(8, what); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

// parseTOC decodes the TOC; dataEnd is the end of the frame data region
// (the TOC's offset), which every internal frame must lie within.
func parseTOC(b []byte, dataEnd int64) ([]FrameInfo, map[string][]Extent, error) {
	r := &tocReader{b: b}
	if m := r.take(len(TOCMagic), "magic"); m != nil && string(m) != TOCMagic {
		return nil, nil, fmt.Errorf("%w: TOC magic %q, want %q", ErrBadMagic, m, TOCMagic)
	}
	nf := int(r.u32("frame count"))
	if r.err == nil && nf > (len(b)-r.off)/frameRecordFixed {
		return nil, nil, corruptf("TOC: %d frames cannot fit in %d bytes", nf, len(b))
	}
	frames := make([]FrameInfo, 0, nf)
	var prevEnd int64 = HeaderSize
	for i := 0; i < nf && r.err == nil; i++ {
		var f FrameInfo
		copy(f.Digest[:], r.take(32, "frame digest"))
		f.Offset = int64(r.u64("frame offset"))
		f.Length = int64(r.u32("frame length"))
		pages := int(r.u16("frame pages"))
		flags := r.u16("frame flags")
		if r.err != nil {
			break
		}
		if pages < 1 || pages > MaxFramePages {
			return nil, nil, corruptf("TOC: frame %d has %d pages (want 1..%d)", i, pages, MaxFramePages)
		}
		if flags&^FlagExternal != 0 {
			return nil, nil, corruptf("TOC: frame %d has unknown flags %#x", i, flags)
		}
		f.External = flags&FlagExternal != 0
		raw := r.take(32*pages, "page digests")
		if r.err != nil {
			break
		}
		f.PageDigests = make([]Digest, pages)
		for j := range f.PageDigests {
			copy(f.PageDigests[j][:], raw[32*j:])
		}
		if got := FrameDigest(f.PageDigests); got != f.Digest {
			return nil, nil, corruptf("TOC: frame %d digest %s does not match its page digests (%s)", i, f.Digest, got)
		}
		if f.External {
			if f.Offset != 0 {
				return nil, nil, corruptf("TOC: external frame %d has offset %d, want 0", i, f.Offset)
			}
		} else {
			if f.Length == 0 || f.Offset < prevEnd || f.Offset > dataEnd || f.Length > dataEnd-f.Offset {
				return nil, nil, corruptf("TOC: frame %d at %d+%d outside frame data %d..%d or overlapping the previous frame",
					i, f.Offset, f.Length, prevEnd, dataEnd)
			}
			prevEnd = f.Offset + f.Length
		}
		frames = append(frames, f)
	}
	na := int(r.u32("artifact count"))
	if r.err == nil && na > (len(b)-r.off)/10 {
		return nil, nil, corruptf("TOC: %d artifacts cannot fit in %d bytes", na, len(b))
	}
	exts := make(map[string][]Extent, na)
	for i := 0; i < na && r.err == nil; i++ {
		name := string(r.take(int(r.u16("artifact name length")), "artifact name"))
		ne := r.u64("extent count")
		if r.err != nil {
			break
		}
		if ne > uint64(len(b)-r.off)/extentRecordSize {
			return nil, nil, corruptf("TOC: artifact %q: %d extents cannot fit in %d bytes", name, ne, len(b)-r.off)
		}
		if _, dup := exts[name]; dup {
			return nil, nil, corruptf("TOC: artifact %q twice", name)
		}
		es := make([]Extent, ne)
		for j := range es {
			es[j] = Extent{
				Page:  int64(r.u64("extent page")),
				Count: int32(r.u32("extent count")),
				Frame: int32(r.u32("extent frame")),
				Slot:  int32(r.u32("extent slot")),
			}
		}
		exts[name] = es
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	if r.off != len(b) {
		return nil, nil, corruptf("TOC: %d trailing bytes", len(b)-r.off)
	}
	return frames, exts, nil
}
