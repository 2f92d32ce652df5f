package main

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/registry"
)

// openBundle opens cfg.bundle: a file, or oci://REF served lazily from a
// registry. It returns the bundle, the time its files show, and what closes
// it. Either way it starts reading the recorded working set's frames into
// the cache (a registry's are fetched, a file's decompressed and verified)
// while the first VMM is still setting up.
func openBundle(ctx context.Context, cfg daemonConfig, logger *log.Logger) (*chunkstore.Bundle, time.Time, func() error, error) {
	if registry.IsRef(cfg.bundle) {
		lz, err := registry.Open(ctx, cfg.bundle, registry.LazyOptions{
			Remote:     registry.Remote{Insecure: cfg.insecure},
			CacheBytes: cfg.cacheBytes, SpillDir: cfg.cacheDir,
		})
		if err != nil {
			return nil, time.Time{}, nil, err
		}
		lz.StartPrefetch(2) // the recorded working set; demand reads go first
		return lz.Bundle, time.Now(), lz.Close, nil
	}
	fi, err := os.Stat(cfg.bundle)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	cb, err := chunkstore.Open(cfg.bundle, chunkstore.Options{StoreDir: cfg.storeDir, CacheBytes: cfg.cacheBytes, CacheDir: cfg.cacheDir})
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	stopWarm := warmWorkingSet(cb, cfg.cacheBytes, logger)
	return cb, fi.ModTime(), func() error { stopWarm(); return cb.Close() }, nil
}

// warmWorkingSetWorkers: frames decompressed and verified at once while
// warming (a VMM starting meanwhile wants a CPU too).
const warmWorkingSetWorkers = 2

// warmWorkingSet reads the working set's frames of a file bundle into its
// cache in the background; the returned func stops it and waits.
func warmWorkingSet(cb *chunkstore.Bundle, cacheBytes int64, logger *log.Logger) (stop func()) {
	frames := cb.Manifest().WorkingSetFrames()
	if len(frames) == 0 || cacheBytes < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		n, err := cb.Warm(ctx, frames, warmWorkingSetWorkers)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Printf("working set: warmed %d of %d frames in %v: %v (left to the readers)", n, len(frames), time.Since(start).Round(time.Millisecond), err)
		case err == nil:
			logger.Printf("working set: warmed %d frames in %v", n, time.Since(start).Round(time.Millisecond))
		}
	}()
	return func() { cancel(); <-done }
}
