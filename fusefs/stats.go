package fusefs

import (
	"encoding/json"
	"sync/atomic"
)

// Stats are the filesystem's own counters, safe for concurrent use.
type Stats struct {
	opens      atomic.Int64
	reads      atomic.Int64
	bytesRead  atomic.Int64
	readErrors atomic.Int64
	maxRead    atomic.Int64
	zeroBytes  atomic.Int64
}

// FSStats is a snapshot of Stats, as .stats shows it under "fs".
type FSStats struct {
	// Opens counts opens of image and config files (not .stats).
	Opens int64 `json:"opens"`
	// Reads counts FUSE READ requests served (page cache hits never reach
	// the daemon, so they are not counted).
	Reads int64 `json:"reads"`
	// BytesRead is the bytes returned by those reads.
	BytesRead int64 `json:"bytes_read"`
	// ZeroBytes is the part of BytesRead served as zero pages, without a
	// fetch. (Image reads bypass Image.ReadAt, so the store's own
	// reads/read_bytes/zero_bytes stay 0 unless CopyReads is set.)
	ZeroBytes int64 `json:"zero_bytes"`
	// ReadErrors counts reads answered with EIO (a frame that failed
	// verification or could not be fetched).
	ReadErrors int64 `json:"read_errors"`
	// MaxReadBytes is the largest READ request seen: shows the read size
	// the kernel settled on (max_read, readahead).
	MaxReadBytes int64 `json:"max_read_bytes"`
}

// Snapshot returns the current counters.
func (s *Stats) Snapshot() FSStats {
	return FSStats{
		Opens:        s.opens.Load(),
		Reads:        s.reads.Load(),
		BytesRead:    s.bytesRead.Load(),
		ZeroBytes:    s.zeroBytes.Load(),
		ReadErrors:   s.readErrors.Load(),
		MaxReadBytes: s.maxRead.Load(),
	}
}

func (s *Stats) noteRead(requested, served int, failed bool) {
	s.reads.Add(1)
	if failed {
		s.readErrors.Add(1)
		return
	}
	s.bytesRead.Add(int64(served))
	for {
		cur := s.maxRead.Load()
		if int64(requested) <= cur || s.maxRead.CompareAndSwap(cur, int64(requested)) {
			return
		}
	}
}

// StatsFile is the JSON document .stats serves.
type StatsFile struct {
	FS    FSStats `json:"fs"`
	Store any     `json:"store"`
}

// ParseStats decodes a .stats document; Store is left as raw JSON for the
// caller to decode into the store's own type.
func ParseStats(b []byte) (FSStats, json.RawMessage, error) {
	var doc struct {
		FS    FSStats         `json:"fs"`
		Store json.RawMessage `json:"store"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return FSStats{}, nil, err
	}
	return doc.FS, doc.Store, nil
}
