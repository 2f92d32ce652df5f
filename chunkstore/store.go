package chunkstore

import (
	"context"

	"github.com/smolvm/smolvm/format"
)

// Sentinel errors, shared with package format so one errors.Is works at
// every layer.
var (
	// ErrNotFound: no frame with that digest (or no such artifact).
	ErrNotFound = format.ErrNotFound
	// ErrCorrupt: a frame's bytes do not match its digest.
	ErrCorrupt = format.ErrCorrupt
)

// Store gets frames by digest. Get returns the frame's raw (compressed,
// unverified) bytes, or an error wrapping ErrNotFound; callers verify them
// with format.DecodeFrame against the frame table before using a byte.
// Implementations are safe for concurrent use.
type Store interface {
	Get(ctx context.Context, d format.Digest) ([]byte, error)
	Has(ctx context.Context, d format.Digest) (bool, error)
}

// WriteStore is a Store that accepts frames. Put stores raw (a compressed
// frame) under d together with the frame's page digests, atomically: a
// reader sees the whole frame or nothing. Putting a frame already present is
// a no-op. pages must satisfy format.FrameDigest(pages) == d.
type WriteStore interface {
	Store
	Put(ctx context.Context, d format.Digest, raw []byte, pages []format.Digest) error
}
