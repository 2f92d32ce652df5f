package chunkstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/smolvm/smolvm/format"
)

// Extract writes artifact name's non-zero pages to w at their image offsets,
// frames fetched and verified in parallel; zero pages are not written (the
// caller sizes w first, so they read as zeros or are holes). progress, when
// set, gets the image bytes covered by each extent written.
func (b *Bundle) Extract(ctx context.Context, name string, w io.WriterAt, progress func(n int64)) error {
	imi, err := b.Image(name)
	if err != nil {
		return err
	}
	im := imi.(*image)
	es := im.a.Extents
	size := im.a.Size
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan format.Extent)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	fail := func(err error) {
		once.Do(func() { first = err; cancel() })
	}
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range jobs {
				data, err := im.frame(ctx, e)
				if err != nil {
					fail(err)
					continue
				}
				off := e.Page * format.PageSize
				chunk := data[int64(e.Slot)*format.PageSize : (int64(e.Slot)+int64(e.Count))*format.PageSize]
				if end := off + int64(len(chunk)); end > size {
					chunk = chunk[:size-off]
				}
				if _, err := w.WriteAt(chunk, off); err != nil {
					fail(fmt.Errorf("chunkstore: extract %s at offset %#x: %w", name, off, err))
					continue
				}
				if progress != nil {
					progress(int64(len(chunk)))
				}
			}
		}()
	}
	for _, e := range es {
		select {
		case jobs <- e:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
