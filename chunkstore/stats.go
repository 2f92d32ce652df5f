package chunkstore

import "sync/atomic"

// Stats counts what a cache (and the images reading through it) did. All
// fields are totals since the cache was made; Snapshot them with Stats().
type Stats struct {
	// FramesFetched / BytesFetched: frames and compressed bytes read from
	// the source store (the bundle file, a directory store).
	FramesFetched int64 `json:"frames_fetched"`
	BytesFetched  int64 `json:"bytes_fetched"`
	// BytesDecoded: decompressed, verified bytes produced.
	BytesDecoded int64 `json:"bytes_decoded"`
	// CacheHits / CacheMisses: frame requests served from memory or not;
	// SpillHits: misses served from the spill directory.
	CacheHits   int64 `json:"cache_hits"`
	CacheMisses int64 `json:"cache_misses"`
	SpillHits   int64 `json:"spill_hits"`
	// VerifyFailures: fetched frames that did not match their digest.
	VerifyFailures int64 `json:"verify_failures"`
	// Reads / ReadBytes: ReadAt calls served by images and their bytes;
	// ZeroBytes: bytes of those served as zero pages without a fetch.
	Reads     int64 `json:"reads"`
	ReadBytes int64 `json:"read_bytes"`
	ZeroBytes int64 `json:"zero_bytes"`
	// CachedFrames / CachedBytes: what the memory cache holds now.
	CachedFrames int64 `json:"cached_frames"`
	CachedBytes  int64 `json:"cached_bytes"`
}

type counters struct {
	framesFetched, bytesFetched, bytesDecoded atomic.Int64
	hits, misses, spillHits, verifyFailures   atomic.Int64
	reads, readBytes, zeroBytes               atomic.Int64
}

func (c *counters) snapshot() Stats {
	return Stats{
		FramesFetched:  c.framesFetched.Load(),
		BytesFetched:   c.bytesFetched.Load(),
		BytesDecoded:   c.bytesDecoded.Load(),
		CacheHits:      c.hits.Load(),
		CacheMisses:    c.misses.Load(),
		SpillHits:      c.spillHits.Load(),
		VerifyFailures: c.verifyFailures.Load(),
		Reads:          c.reads.Load(),
		ReadBytes:      c.readBytes.Load(),
		ZeroBytes:      c.zeroBytes.Load(),
	}
}
