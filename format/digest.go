package format

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Digest identifies a page or a frame: a SHA-256 digest (docs/FORMAT.md says
// exactly what bytes it covers).
type Digest [sha256.Size]byte

// String gives the digest as "sha256:" followed by 64 lowercase hex digits,
// the form OCI registries use.
func (d Digest) String() string { return "sha256:" + hex.EncodeToString(d[:]) }

// Hex gives the 64 hex digits alone.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// ParseDigest accepts "sha256:<64 hex>" or the bare 64 hex digits.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	h := s
	if len(h) > 7 && h[:7] == "sha256:" {
		h = h[7:]
	}
	if len(h) != 2*len(d) {
		return d, fmt.Errorf("digest %q: want 64 hex digits, got %d characters", s, len(h))
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, fmt.Errorf("digest %q: %w", s, err)
	}
	return d, nil
}
