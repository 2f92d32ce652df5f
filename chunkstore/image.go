package chunkstore

import (
	"context"
	"io"

	"github.com/smolvm/smolvm/format"
)

// Image is one artifact of a bundle (memory, kernel, initrd, disk/NAME) as a
// lazily read, verified byte image of a known size. It is what fusefs and the
// pager consume; an implementation is safe for concurrent use.
type Image interface {
	// Name is the artifact's name in the manifest ("memory", "disk/root").
	Name() string
	// Size is the image's exact length in bytes.
	Size() int64
	// ReadAt reads verified bytes. Ranges of zero pages are filled with
	// zeros without fetching anything. A frame that fails verification
	// makes the read fail with an error wrapping ErrCorrupt.
	io.ReaderAt
	// Extents lists where the image's non-zero pages live, sorted by Page
	// and not overlapping. Pages no extent covers are all-zero.
	Extents() []format.Extent
	// Locate returns the extent holding page (image offset / PageSize), or
	// ok=false for a zero page.
	Locate(page int64) (e format.Extent, ok bool)
	// FrameExtents lists the extents of this image stored in frame idx:
	// the pages a pager fills when any one of them faults.
	FrameExtents(frame int) []format.Extent
	// Frame returns frame idx (an index into the bundle's frame table)
	// verified and decompressed: Pages*PageSize bytes, slot i at i*PageSize.
	// The slice is shared (cached): callers must not modify it.
	Frame(ctx context.Context, frame int) ([]byte, error)
}
