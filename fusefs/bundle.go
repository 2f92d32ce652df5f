package fusefs

import (
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/smolvm/smolvm/chunkstore"
)

// Bundle is the opened bundle a mount serves. chunkstore's opened store
// satisfies it through a small adapter (cmd/smolmount); tests use fakes.
type Bundle interface {
	// Images lists the lazily read artifacts. Each one's Name is its path
	// in the mount: "memory", "kernel", "initrd", "disk/root".
	Images() []chunkstore.Image
	// Files lists small artifacts served from memory, by path in the
	// mount: "config.json", and "state" when the bundle has one.
	Files() map[string][]byte
	// Stats returns the store's counters (frames and bytes fetched, cache
	// hits, verification failures); .stats shows them under "store". It
	// must be safe to call concurrently with reads.
	Stats() any
}

// content is what a regular file in the mount serves: an exact size and
// random access reads.
type content interface {
	io.ReaderAt
	Size() int64
}

// checkPath accepts a slash-separated relative path with no empty, "." or
// ".." element, no NUL and no leading dot in its first element (reserved for
// .stats).
func checkPath(p string) error {
	if p == "" || p != path.Clean(p) || strings.HasPrefix(p, "/") || strings.HasPrefix(p, ".") {
		return fmt.Errorf("fusefs: artifact path %q: %w", p, ErrBadPath)
	}
	for _, el := range strings.Split(p, "/") {
		if el == "." || el == ".." || el == "" || strings.ContainsRune(el, 0) || len(el) > 255 {
			return fmt.Errorf("fusefs: artifact path %q: element %q: %w", p, el, ErrBadPath)
		}
	}
	return nil
}
