package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"syscall"
)

// SnapshotRequest is PUT /snapshot's body.
type SnapshotRequest struct {
	// Output is the bundle's absolute path (the VM's process writes it).
	Output string `json:"output"`
	// Store is a directory store to dedup against and put new frames in.
	Store string `json:"store,omitempty"`
	// Stop stops the VM once the bundle is written.
	Stop bool `json:"stop,omitempty"`
	// NoRecord skips recording the bundle's working set.
	NoRecord bool `json:"no_record,omitempty"`
}

// SnapshotFunc writes a snapshot and returns what to answer (JSON).
type SnapshotFunc func(ctx context.Context, req SnapshotRequest) (any, error)

// SetSnapshot enables PUT /snapshot, served by fn.
func (s *Server) SetSnapshot(fn SnapshotFunc) {
	s.mu.Lock()
	s.snap = fn
	s.mu.Unlock()
}

// snapshot serves PUT /snapshot: one at a time, never with a pause or
// resume in progress nor on a stopping VM.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	var req SnapshotRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		reply(w, http.StatusBadRequest, apiError{fmt.Sprintf("snapshot: bad request body: %v", err)})
		return
	}
	if req.Output == "" || !filepath.IsAbs(req.Output) || (req.Store != "" && !filepath.IsAbs(req.Store)) {
		reply(w, http.StatusBadRequest, apiError{"snapshot: output (and store) must be absolute paths"})
		return
	}
	s.mu.Lock()
	fn := s.snap
	if fn == nil {
		s.mu.Unlock()
		reply(w, http.StatusNotImplemented, apiError{"this VM cannot be snapshotted"})
		return
	}
	if !s.claimLocked(w) {
		return
	}
	s.mu.Unlock()
	res, err := fn(r.Context(), req)
	s.mu.Lock()
	s.busy = false
	if err == nil && req.Stop {
		s.state = StateStopping
	}
	s.mu.Unlock()
	if err != nil {
		reply(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	reply(w, http.StatusOK, res)
}

// Snapshot asks PUT /snapshot and decodes the answer into res. It is
// bounded by ctx only: a snapshot of a large VM takes a while.
func (c *Client) Snapshot(ctx context.Context, req SnapshotRequest, res any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://smolvm/snapshot", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(hr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w: PUT snapshot: control socket %s does not answer", ErrNotRunning, c.socket)
		}
		return fmt.Errorf("control: PUT snapshot via %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("control: PUT snapshot: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e apiError
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = string(b)
		}
		return fmt.Errorf("control: PUT snapshot: %s: %s", resp.Status, e.Error)
	}
	if res != nil {
		if err := json.Unmarshal(b, res); err != nil {
			return fmt.Errorf("control: PUT snapshot: bad answer: %w", err)
		}
	}
	return nil
}
