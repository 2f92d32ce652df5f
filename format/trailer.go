package format

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Trailer is the fixed-size record at the very end of a bundle: where the
// TOC and manifest are and their digests (docs/FORMAT.md "Trailer").
type Trailer struct {
	TOCOffset      int64
	TOCLength      int64
	ManifestOffset int64
	ManifestLength int64
	TOCDigest      Digest
	ManifestDigest Digest
	Major, Minor   uint16
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// marshal encodes the trailer (TrailerSize bytes).
func (t *Trailer) marshal() []byte {
	b := make([]byte, TrailerSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], uint64(t.TOCOffset))
	le.PutUint64(b[8:], uint64(t.TOCLength))
	le.PutUint64(b[16:], uint64(t.ManifestOffset))
	le.PutUint64(b[24:], uint64(t.ManifestLength))
	copy(b[32:64], t.TOCDigest[:])
	copy(b[64:96], t.ManifestDigest[:])
	// 96..108 reserved, zero
	le.PutUint16(b[108:], t.Major)
	le.PutUint16(b[110:], t.Minor)
	le.PutUint32(b[112:], 0) // flags
	le.PutUint32(b[116:], crc32.Checksum(b[:116], castagnoli))
	copy(b[120:], TrailerMagic)
	return b
}

// parseTrailer decodes and checks the trailer of a file of fileSize bytes.
func parseTrailer(b []byte, fileSize int64) (Trailer, error) {
	var t Trailer
	if string(b[120:128]) != TrailerMagic {
		return t, fmt.Errorf("%w: trailer magic %q, want %q", ErrBadMagic, b[120:128], TrailerMagic)
	}
	le := binary.LittleEndian
	t.Major, t.Minor = le.Uint16(b[108:]), le.Uint16(b[110:])
	if t.Major > VersionMajor || t.Major == 0 {
		return t, fmt.Errorf("%w: bundle is format %d.%d, this reader knows %d.x", ErrVersion, t.Major, t.Minor, VersionMajor)
	}
	if got, want := crc32.Checksum(b[:116], castagnoli), le.Uint32(b[116:]); got != want {
		return t, corruptf("trailer checksum %08x, want %08x", got, want)
	}
	if f := le.Uint32(b[112:]); f != 0 {
		return t, corruptf("trailer flags %#x, want 0", f)
	}
	t.TOCOffset = int64(le.Uint64(b[0:]))
	t.TOCLength = int64(le.Uint64(b[8:]))
	t.ManifestOffset = int64(le.Uint64(b[16:]))
	t.ManifestLength = int64(le.Uint64(b[24:]))
	copy(t.TOCDigest[:], b[32:64])
	copy(t.ManifestDigest[:], b[64:96])
	end := fileSize - TrailerSize
	in := func(off, n int64) bool { return off >= HeaderSize && n >= 0 && off <= end && n <= end-off }
	if !in(t.TOCOffset, t.TOCLength) || !in(t.ManifestOffset, t.ManifestLength) {
		return t, corruptf("trailer: TOC at %d+%d or manifest at %d+%d outside the file's %d..%d",
			t.TOCOffset, t.TOCLength, t.ManifestOffset, t.ManifestLength, HeaderSize, end)
	}
	if t.ManifestOffset != t.TOCOffset+t.TOCLength || t.ManifestOffset+t.ManifestLength != end {
		return t, corruptf("trailer: TOC %d+%d, manifest %d+%d and trailer at %d are not contiguous",
			t.TOCOffset, t.TOCLength, t.ManifestOffset, t.ManifestLength, end)
	}
	if t.ManifestLength > MaxManifestSize {
		return t, corruptf("trailer: manifest of %d bytes exceeds %d", t.ManifestLength, MaxManifestSize)
	}
	return t, nil
}
