package chunkstore

import (
	"context"
	"fmt"
	"io"

	"github.com/smolvm/smolvm/format"
)

// image implements Image for one artifact of an opened Bundle.
type image struct {
	b       *Bundle
	a       *format.Artifact
	byFrame map[int32][]format.Extent
}

func (im *image) Name() string                            { return im.a.Name }
func (im *image) Size() int64                             { return im.a.Size }
func (im *image) Extents() []format.Extent                { return im.a.Extents }
func (im *image) Locate(page int64) (format.Extent, bool) { return im.a.Locate(page) }

func (im *image) FrameExtents(frame int) []format.Extent { return im.byFrame[int32(frame)] }

// Frame returns frame idx verified; a failure names this artifact and the
// image offset of the frame's first page in it.
func (im *image) Frame(ctx context.Context, frame int) ([]byte, error) {
	es := im.byFrame[int32(frame)]
	if len(es) == 0 {
		return nil, fmt.Errorf("chunkstore: %s: frame %d: %w (the image does not use it)", im.a.Name, frame, ErrNotFound)
	}
	return im.frame(ctx, es[0])
}

func (im *image) frame(ctx context.Context, e format.Extent) ([]byte, error) {
	data, err := im.b.cache.Frame(ctx, im.b.r.Frame(int(e.Frame)))
	if err != nil {
		return nil, &CorruptError{Artifact: im.a.Name, Offset: e.Page * format.PageSize, Frame: int(e.Frame), Err: err}
	}
	return data, nil
}

// ReadAt reads len(p) bytes at off (fewer, with io.EOF, at the image's end).
// Zero pages are filled without a fetch.
func (im *image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("chunkstore: %s: negative offset %d", im.a.Name, off)
	}
	size := im.a.Size
	if off >= size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	ctx, cancel := context.WithTimeout(context.Background(), im.b.timeout)
	defer cancel()
	ctr := &im.b.cache.ctr
	ctr.reads.Add(1)
	want := len(p)
	var atEOF bool
	if int64(want) > size-off {
		want = int(size - off)
		atEOF = true
	}
	n := 0
	for n < want {
		pos := off + int64(n)
		page := pos / format.PageSize
		e, ok := im.a.Locate(page)
		if !ok {
			// Zero until the next extent or the end of the read.
			end := off + int64(want)
			if next := im.nextExtentPage(page); next >= 0 && next*format.PageSize < end {
				end = next * format.PageSize
			}
			z := p[n : n+int(end-pos)]
			clear(z)
			ctr.zeroBytes.Add(int64(len(z)))
			n += len(z)
			continue
		}
		data, err := im.frame(ctx, e)
		if err != nil {
			ctr.readBytes.Add(int64(n))
			return n, err
		}
		// Bytes of this extent from pos on.
		src := data[int64(e.Slot)*format.PageSize+(pos-e.Page*format.PageSize) : (int64(e.Slot)+int64(e.Count))*format.PageSize]
		c := copy(p[n:want], src)
		n += c
	}
	ctr.readBytes.Add(int64(n))
	if atEOF {
		return n, io.EOF
	}
	return n, nil
}

// nextExtentPage is the first page of the first extent after page, or -1.
func (im *image) nextExtentPage(page int64) int64 {
	es := im.a.Extents
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].Page <= page {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) {
		return es[lo].Page
	}
	return -1
}
