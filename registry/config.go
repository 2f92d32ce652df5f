package registry

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/smolvm/smolvm/format"
)

// Media types of a smolvm artifact in a registry.
const (
	// ArtifactType is the OCI manifest's artifactType.
	ArtifactType = "application/vnd.smolvm.machine.v1"
	// ConfigMediaType is the config blob: a Config as JSON.
	ConfigMediaType = "application/vnd.smolvm.machine.config.v1+json"
	// PackMediaType is a layer: compressed frames back to back, exactly as
	// they sit in a bundle, located by the config's frame index.
	PackMediaType = "application/vnd.smolvm.pack.v1"
	// ConfigFormat is Config.Format.
	ConfigFormat = "smolvm-registry/v1"
)

// Sentinel errors.
var (
	// ErrCorrupt: a blob or frame did not match its digest, or a config
	// is malformed.
	ErrCorrupt = format.ErrCorrupt
	// ErrNotFound: no such reference, blob or frame.
	ErrNotFound = format.ErrNotFound
	// ErrNotSmolvm: the reference names something that is not a smolvm
	// artifact.
	ErrNotSmolvm = errors.New("not a smolvm artifact")
)

// maxConfigSize bounds the config blob (the TOC of a 64 GiB image is about
// 0.6 GiB only when every page is distinct data; 256 MiB covers 32 GiB).
const maxConfigSize = 256 << 20

// Config is the artifact's config blob: everything a lazy reader needs but
// the frame bytes.
type Config struct {
	Format string `json:"format"`
	// ManifestDigest is the bundle's identity (format.Reader.ManifestDigest).
	ManifestDigest string `json:"manifest_digest"`
	// BundleSize is the original bundle file's size; TailOffset its TOC
	// offset; Tail its bytes [TailOffset, BundleSize): TOC, manifest and
	// trailer. With the header (fixed by the trailer's version) and the
	// frames placed at their TOC offsets, they rebuild the file exactly.
	BundleSize int64  `json:"bundle_size"`
	TailOffset int64  `json:"tail_offset"`
	Tail       []byte `json:"tail"`
	// Packs lists every pack the frames live in (the manifest's layers).
	Packs []PackRef `json:"packs"`
	// Frames locates frame i of the TOC (same order): pack index and byte
	// offset in that pack; the length is the TOC's.
	Frames [][2]int64 `json:"frames"`
}

// PackRef is one pack blob.
type PackRef struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// frameLoc is where a frame's bytes are in the registry.
type frameLoc struct {
	pack   format.Digest
	size   int64 // the pack's size
	offset int64
	length int64
}

// parsedConfig is a checked Config and the bundle reader over its tail.
type parsedConfig struct {
	Config
	fr    *format.Reader
	packs []format.Digest
	locs  []frameLoc // by frame index
}

// ParseConfig decodes and checks a config blob: JSON shape, the tail as a
// bundle (trailer, TOC and manifest digests, every structural rule of the
// format), and that every frame lies inside a listed pack.
func ParseConfig(b []byte) (*parsedConfig, error) {
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("registry: config: %w: %d bytes, at most %d", ErrCorrupt, len(b), maxConfigSize)
	}
	var c parsedConfig
	if err := json.Unmarshal(b, &c.Config); err != nil {
		return nil, fmt.Errorf("registry: config: %w: %v", ErrCorrupt, err)
	}
	if c.Format != ConfigFormat {
		return nil, fmt.Errorf("registry: config: %w: format %q, want %q", ErrCorrupt, c.Format, ConfigFormat)
	}
	if c.TailOffset < format.HeaderSize || c.BundleSize-c.TailOffset != int64(len(c.Tail)) {
		return nil, fmt.Errorf("registry: config: %w: tail of %d bytes at %d does not end a %d-byte bundle", ErrCorrupt, len(c.Tail), c.TailOffset, c.BundleSize)
	}
	fr, err := format.Open(&tailView{c: &c.Config}, c.BundleSize)
	if err != nil {
		return nil, fmt.Errorf("registry: config: bundle tail: %w", err)
	}
	if fr.ManifestDigest().String() != c.ManifestDigest {
		return nil, fmt.Errorf("registry: config: %w: manifest digest %s, the tail's is %s", ErrCorrupt, c.ManifestDigest, fr.ManifestDigest())
	}
	if fr.Trailer().TOCOffset != c.TailOffset {
		return nil, fmt.Errorf("registry: config: %w: tail starts at %d, the TOC at %d", ErrCorrupt, c.TailOffset, fr.Trailer().TOCOffset)
	}
	c.fr = fr
	for i, p := range c.Packs {
		d, err := format.ParseDigest(p.Digest)
		if err != nil || p.Size <= 0 {
			return nil, fmt.Errorf("registry: config: %w: pack %d: digest %q size %d", ErrCorrupt, i, p.Digest, p.Size)
		}
		c.packs = append(c.packs, d)
	}
	frames := fr.Frames()
	if len(c.Frames) != len(frames) {
		return nil, fmt.Errorf("registry: config: %w: %d frame locations for %d frames", ErrCorrupt, len(c.Frames), len(frames))
	}
	c.locs = make([]frameLoc, len(frames))
	for i, l := range c.Frames {
		p, off := l[0], l[1]
		if p < 0 || p >= int64(len(c.Packs)) || off < 0 || off+frames[i].Length > c.Packs[p].Size {
			return nil, fmt.Errorf("registry: config: %w: frame %d (%s): pack %d offset %d length %d is outside the packs", ErrCorrupt, i, frames[i].Digest, p, off, frames[i].Length)
		}
		c.locs[i] = frameLoc{pack: c.packs[p], size: c.Packs[p].Size, offset: off, length: frames[i].Length}
	}
	return &c, nil
}

// header is the 16-byte bundle header for the trailer's version.
func header(t format.Trailer) []byte {
	h := make([]byte, format.HeaderSize)
	copy(h, format.Magic)
	binary.LittleEndian.PutUint16(h[8:], t.Major)
	binary.LittleEndian.PutUint16(h[10:], t.Minor)
	return h
}

// tailView is the bundle file as a config knows it: the header and the tail;
// reading frame data fails. format.Open reads nothing else.
type tailView struct {
	c *Config
}

func (v *tailView) ReadAt(p []byte, off int64) (int, error) {
	if off >= v.c.TailOffset {
		if off >= v.c.BundleSize {
			return 0, fmt.Errorf("registry: %w: read at %d past the bundle's %d bytes", ErrCorrupt, off, v.c.BundleSize)
		}
		n := copy(p, v.c.Tail[off-v.c.TailOffset:])
		if n < len(p) {
			return n, fmt.Errorf("registry: %w: read of %d bytes at %d past the bundle's end", ErrCorrupt, len(p), off)
		}
		return n, nil
	}
	if off == 0 && len(p) == format.HeaderSize && len(v.c.Tail) >= format.TrailerSize {
		tb := v.c.Tail[len(v.c.Tail)-format.TrailerSize:]
		le := binary.LittleEndian
		return copy(p, header(format.Trailer{Major: le.Uint16(tb[108:]), Minor: le.Uint16(tb[110:])})), nil
	}
	return 0, fmt.Errorf("registry: %w: bundle bytes [%d, %d) are frame data, not in the config's tail", ErrCorrupt, off, off+int64(len(p)))
}
