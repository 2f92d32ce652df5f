package fusefs

import (
	"context"
	"fmt"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// frameReadTimeout bounds the frame fetches of one READ (a stuck store must
// turn into EIO, never a hung reader).
const frameReadTimeout = 2 * time.Minute

// zeros backs every zero range of a reply: read-only, shared.
var zeros = make([]byte, DefaultMaxRead)

// readVector answers [off, off+want) of img without copying: the reply is a
// list of slices of the cached, verified frames (immutable and shared) and
// of a shared zero buffer for zero pages, which the kernel gathers with
// writev. Zero pages fetch nothing.
func readVector(ctx context.Context, img chunkstore.Image, off, want int64, st *Stats) (fuse.ReadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, frameReadTimeout)
	defer cancel()
	end := off + want
	var vecs [][]byte
	for pos := off; pos < end; {
		page := pos / format.PageSize
		e, ok := img.Locate(page)
		if !ok {
			// A run of zero pages, up to the next stored page.
			run := pos
			for run < end {
				if _, stored := img.Locate(run / format.PageSize); stored {
					break
				}
				run = min(end, (run/format.PageSize+1)*format.PageSize)
			}
			st.zeroBytes.Add(run - pos)
			for pos < run {
				n := min(run-pos, int64(len(zeros)))
				vecs = append(vecs, zeros[:n])
				pos += n
			}
			continue
		}
		frame, err := img.Frame(ctx, int(e.Frame))
		if err != nil {
			return nil, err
		}
		start := (int64(e.Slot)+page-e.Page)*format.PageSize + pos%format.PageSize
		stop := start + min(end, e.End()*format.PageSize) - pos
		if stop > int64(len(frame)) {
			return nil, fmt.Errorf("frame %d is %d bytes, extent %v needs %d: %w", e.Frame, len(frame), e, stop, chunkstore.ErrCorrupt)
		}
		vecs = append(vecs, frame[start:stop])
		pos += stop - start
	}
	return fuse.ReadResultVector(vecs), nil
}
