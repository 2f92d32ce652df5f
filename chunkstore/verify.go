package chunkstore

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/smolvm/smolvm/format"
)

// VerifyResult says what Verify checked.
type VerifyResult struct {
	Frames      int     `json:"frames"`
	Pages       int64   `json:"pages"`
	RawBytes    int64   `json:"raw_bytes"`
	ImageBytes  int64   `json:"image_bytes"`
	Seconds     float64 `json:"seconds"`
	Failures    []error `json:"-"`
	FailedCount int     `json:"failed_frames"`
}

// maxFailures bounds the failures Verify keeps.
const maxFailures = 64

// Verify fetches every frame of the bundle from its source (bypassing the
// cache), decompresses it and checks every page digest and the frame digest.
// progress, when not nil, is called with the decompressed bytes of each frame
// checked. It returns an error (the first failure, a *CorruptError naming the
// artifact, offset, frame and digests) when any frame fails; all failures
// (up to 64) are in the result.
func (b *Bundle) Verify(ctx context.Context, progress func(n int64)) (VerifyResult, error) {
	start := time.Now()
	frames := b.r.Frames()
	owners := b.frameOwners()
	var res VerifyResult
	res.Frames = len(frames)
	for _, a := range b.r.Manifest().Artifacts {
		res.ImageBytes += a.Size
	}
	var mu sync.Mutex
	next := 0
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var raw, buf []byte
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(frames) || ctx.Err() != nil {
					return
				}
				f := &frames[i]
				var err error
				if f.External {
					raw, err = b.src.Get(ctx, f.Digest)
				} else {
					raw, err = b.r.ReadRaw(i, raw)
				}
				if err == nil {
					buf, err = format.DecodeFrame(f, raw, buf)
				}
				mu.Lock()
				res.Pages += int64(f.Pages())
				res.RawBytes += int64(len(raw))
				if err != nil {
					res.FailedCount++
					if len(res.Failures) < maxFailures {
						res.Failures = append(res.Failures, b.frameError(owners, i, err))
					}
				}
				mu.Unlock()
				if progress != nil {
					progress(int64(f.Size()))
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if len(res.Failures) > 0 {
		// Report the lowest frame index first: deterministic output.
		first := res.Failures[0]
		for _, e := range res.Failures[1:] {
			var a, c *CorruptError
			if errors.As(e, &a) && errors.As(first, &c) && a.Frame < c.Frame {
				first = e
			}
		}
		return res, first
	}
	return res, nil
}

// frameError names where a bad frame is used: the image offset of its first
// bad page when the digest check found one, else of its first page.
func (b *Bundle) frameError(owners map[int32]owner, i int, err error) error {
	var fe *format.FrameError
	if errors.As(err, &fe) && fe.Page >= 0 {
		slot := int32(fe.Page)
		for _, a := range b.r.Manifest().Artifacts {
			for _, e := range a.Extents {
				if int(e.Frame) == i && slot >= e.Slot && slot < e.Slot+e.Count {
					return &CorruptError{Artifact: a.Name, Offset: (e.Page + int64(slot-e.Slot)) * format.PageSize, Frame: i, Err: err}
				}
			}
		}
	}
	o, ok := owners[int32(i)]
	if !ok {
		return &CorruptError{Artifact: "(unreferenced)", Offset: -1, Frame: i, Err: err}
	}
	return &CorruptError{Artifact: o.artifact, Offset: o.e.Page * format.PageSize, Frame: i, Err: err}
}
