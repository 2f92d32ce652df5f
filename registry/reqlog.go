package registry

import (
	"encoding/json"
	"os"
	"sync"
	"time"
)

// LogEnv names an environment variable: when it holds a file path, every
// range request this process makes is appended to that file as one JSON
// line (a reqRecord), for finding where a lazy start's bytes go. Several
// processes (smolvm run and its bundle daemon) may share one file: each line
// is one write to a file opened O_APPEND.
const LogEnv = "SMOLVM_REGISTRY_LOG"

// reqRecord is one range request in the log.
type reqRecord struct {
	Time   string  `json:"t"`    // when it started (RFC 3339, ns)
	PID    int     `json:"pid"`  // the process
	Why    string  `json:"why"`  // demand, prefetch, pack
	Blob   string  `json:"blob"` // pack digest, first 12 hex digits
	Off    int64   `json:"off"`
	Len    int64   `json:"len"`
	Frames int     `json:"frames,omitempty"` // frames in the range (0: a pack part)
	First  int     `json:"first,omitempty"`  // the first frame's index
	Ms     float64 `json:"ms"`
	Err    string  `json:"err,omitempty"`
}

var reqLog struct {
	once sync.Once
	mu   sync.Mutex
	f    *os.File
}

// logRequest appends r to $SMOLVM_REGISTRY_LOG's file when that is set; a
// failure to log is ignored (logging must not fail a read).
func logRequest(r reqRecord) {
	reqLog.once.Do(func() {
		if p := os.Getenv(LogEnv); p != "" {
			reqLog.f, _ = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		}
	})
	if reqLog.f == nil {
		return
	}
	r.PID = os.Getpid()
	if len(r.Blob) > 19 {
		r.Blob = r.Blob[7:19] // "sha256:" + 12 hex digits
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	reqLog.mu.Lock()
	_, _ = reqLog.f.Write(append(b, '\n'))
	reqLog.mu.Unlock()
}

// since is the milliseconds from start to now.
func since(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }
