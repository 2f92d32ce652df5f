package chunkstore

import (
	"context"
	"sync"
	"sync/atomic"
)

// Warm reads frames (verified, decompressed) into the bundle's cache with
// workers goroutines, in order, so that the first reader of them finds
// them ready: a bundle daemon warms the working set's frames
// (format.Manifest.WorkingSetFrames) while the first VMM is still setting
// up. It returns how many frames it read and the first error; a frame that
// fails is left to whoever reads it next (and fails them the same way).
// It stops early when ctx ends.
func (b *Bundle) Warm(ctx context.Context, frames []int, workers int) (int, error) {
	workers = max(workers, 1)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		n        atomic.Int64
		errOnce  sync.Once
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range next {
				if ctx.Err() != nil {
					continue
				}
				if _, err := b.Frame(ctx, idx); err != nil {
					errOnce.Do(func() { firstErr = err })
					continue
				}
				n.Add(1)
			}
		}()
	}
feed:
	for _, idx := range frames {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- idx:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil && int(n.Load()) < len(frames) {
		firstErr = ctx.Err()
	}
	return int(n.Load()), firstErr
}
