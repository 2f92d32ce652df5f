package pager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
)

// Server is the daemon side: it serves the userfaultfds that VMMs register
// over a unix socket, from a bundle's images. One Server serves any number
// of VMs, one connection each. The process running it must never touch the
// memory it serves.
type Server struct {
	// Open resolves an artifact name ("memory") to its image. Required.
	Open func(artifact string) (chunkstore.Image, error)
	// FrameTimeout bounds one attempt at getting a frame (default 10s).
	FrameTimeout time.Duration
	// FrameRetries is how many more attempts a failed frame gets
	// (default 2); then the fault is reported as unservable.
	FrameRetries int
	// Workers is how many goroutines serve one VM's faults at once
	// (default 1): more let faults on different frames be fetched in
	// parallel (vCPUs faulting together, a slow store).
	Workers int
	// Logf logs what the daemon's operator should see (default: nothing).
	Logf func(format string, args ...any)
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

// Serve accepts connections on ln and serves each until its client closes
// or ctx ends; it closes ln and returns when ctx ends, after every session
// has ended.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	if s.Open == nil {
		return errors.New("pager: Server.Open is nil")
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("pager: accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.ServeConn(ctx, conn); err != nil {
				s.logf("pager: session: %v", err)
			}
		}()
	}
}

// fetch gets a frame with bounded attempts, each bounded by FrameTimeout.
func (s *Server) fetch(ctx context.Context, c *counters, img chunkstore.Image, frame int32) ([]byte, error) {
	timeout := s.FrameTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	retries := s.FrameRetries
	if retries <= 0 {
		retries = 2
	}
	var lastErr error
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		fctx, cancel := context.WithTimeout(ctx, timeout)
		data, err := img.Frame(fctx, int(frame))
		cancel()
		if err == nil {
			c.framesFetched.Add(1)
			c.bytesFetched.Add(int64(len(data)))
			return data, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, chunkstore.ErrCorrupt) {
			break // the same bytes will fail the same way
		}
	}
	return nil, fmt.Errorf("%s frame %d: %w", img.Name(), frame, lastErr)
}
