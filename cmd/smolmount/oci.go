package main

import (
	"context"
	"os"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/registry"
)

// openBundle opens cfg.bundle: a file, or oci://REF served lazily from a
// registry. It returns the bundle, the time its files show, and what closes
// it.
func openBundle(ctx context.Context, cfg daemonConfig) (*chunkstore.Bundle, time.Time, func() error, error) {
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
	return cb, fi.ModTime(), cb.Close, nil
}
