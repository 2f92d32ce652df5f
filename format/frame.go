package format

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// FrameInfo is one entry of a bundle's frame table: a frame is up to
// MaxFramePages pages compressed together as one zstd frame.
type FrameInfo struct {
	// Digest is FrameDigest(PageDigests).
	Digest Digest
	// Offset is where the compressed bytes start in the bundle file (0 for
	// an external frame); Length is their count.
	Offset int64
	Length int64
	// External frames live in a chunk store, not in the bundle.
	External bool
	// PageDigests holds the SHA-256 of each page slot; the frame
	// decompresses to len(PageDigests)*PageSize bytes.
	PageDigests []Digest
}

// Pages is the number of page slots in the frame.
func (f *FrameInfo) Pages() int { return len(f.PageDigests) }

// Size is the decompressed size of the frame.
func (f *FrameInfo) Size() int { return len(f.PageDigests) * PageSize }

var zeroPage [PageSize]byte

// ZeroPageDigest is the digest of an all-zero page (never stored).
var ZeroPageDigest = PageDigest(zeroPage[:])

// IsZero reports whether p is all zero bytes.
func IsZero(p []byte) bool {
	for len(p) >= PageSize {
		if !bytes.Equal(p[:PageSize], zeroPage[:]) {
			return false
		}
		p = p[PageSize:]
	}
	return bytes.Equal(p, zeroPage[:len(p)])
}

// PageDigest is the SHA-256 of a page. A short page (the partial last page
// of an image) is hashed as if zero-padded to PageSize.
func PageDigest(p []byte) Digest {
	if len(p) >= PageSize {
		return sha256.Sum256(p[:PageSize])
	}
	var buf [PageSize]byte
	copy(buf[:], p)
	return sha256.Sum256(buf[:])
}

// FrameDigest is the SHA-256 of the concatenated page digests of a frame.
func FrameDigest(pages []Digest) Digest {
	h := sha256.New()
	for i := range pages {
		h.Write(pages[i][:])
	}
	var d Digest
	h.Sum(d[:0])
	return d
}

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
)

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		var err error
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true),
			zstd.WithWindowSize(1<<22))
		if err != nil {
			panic("format: zstd encoder options: " + err.Error()) // static options: cannot fail
		}
	})
	return enc
}

func decoder() *zstd.Decoder {
	decOnce.Do(func() {
		var err error
		dec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(MaxFramePages*PageSize),
			zstd.WithDecoderMaxWindow(1<<22),
			zstd.IgnoreChecksum(true))
		if err != nil {
			panic("format: zstd decoder options: " + err.Error()) // static options: cannot fail
		}
	})
	return dec
}

// EncodeFrame compresses pages (a whole number of PageSize pages) as one zstd
// frame, appending to dst. Safe for concurrent use.
func EncodeFrame(dst, pages []byte) []byte {
	return encoder().EncodeAll(pages, dst)
}

// DecodeFrame decompresses raw into dst (reused when large enough) and checks
// every page against f.PageDigests before returning; a mismatch or a bad zstd
// stream gives a *FrameError wrapping ErrCorrupt. Safe for concurrent use.
func DecodeFrame(f *FrameInfo, raw, dst []byte) ([]byte, error) {
	want := f.Size()
	if cap(dst) < want {
		dst = make([]byte, 0, want)
	}
	out, err := decoder().DecodeAll(raw, dst[:0])
	if err != nil {
		return nil, &FrameError{Expected: f.Digest, Page: -1, Reason: "zstd: " + err.Error()}
	}
	if len(out) != want {
		return nil, &FrameError{Expected: f.Digest, Page: -1,
			Reason: fmt.Sprintf("decompressed to %d bytes, want %d (%d pages)", len(out), want, f.Pages())}
	}
	if err := VerifyPages(f, out); err != nil {
		return nil, err
	}
	return out, nil
}

// VerifyPages checks decompressed frame bytes against f: each page's digest,
// and the frame digest over them.
func VerifyPages(f *FrameInfo, data []byte) error {
	if len(data) != f.Size() {
		return &FrameError{Expected: f.Digest, Page: -1,
			Reason: fmt.Sprintf("%d bytes, want %d", len(data), f.Size())}
	}
	bad := -1
	actual := make([]Digest, f.Pages())
	for i := range actual {
		actual[i] = sha256.Sum256(data[i*PageSize : (i+1)*PageSize])
		if bad < 0 && actual[i] != f.PageDigests[i] {
			bad = i
		}
	}
	if bad >= 0 {
		return &FrameError{Expected: f.Digest, Actual: FrameDigest(actual), Page: bad, Reason: "page digest mismatch"}
	}
	if got := FrameDigest(actual); got != f.Digest {
		return &FrameError{Expected: f.Digest, Actual: got, Page: -1, Reason: "frame digest mismatch"}
	}
	return nil
}
