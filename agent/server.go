package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"
)

// maxAcceptFailures is how many accepts in a row may fail before Serve
// gives up on its listener.
const maxAcceptFailures = 50

// acceptBackoff is the pause after the n-th failed accept in a row: 5 ms
// doubling up to 1 s (a variable so that tests can shorten it).
var acceptBackoff = func(n int) time.Duration {
	return min(5*time.Millisecond<<min(n-1, 10), time.Second)
}

// handshakeTimeout bounds how long a new connection may take to say Hello
// and send its request (a variable so that tests can shorten it).
var handshakeTimeout = 10 * time.Second

// Server runs commands for the host: one session per connection.
type Server struct {
	// Name goes into the server's Hello ("smolvm-agent").
	Name string
	// Logf reports sessions that fail; nil uses log.Printf.
	Logf func(format string, args ...any)
	// Identity applies a restored clone's new identity (FrameIdentity);
	// nil refuses such requests.
	Identity func(IdentityRequest) IdentityResult
	// WaitDelay is how long after the command exits its output pipes may
	// stay open (held by a background child) before they are closed;
	// zero means 2 s.
	WaitDelay time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

// Serve accepts connections until ctx is done or ln fails, serving each on
// its own goroutine. On return it closes ln and every connection and waits
// for their sessions (whose commands are killed) to end.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.shutdown()
	failures := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A failed accept (interrupted, aborted by the client, out of
			// descriptors) must not end the agent: retry with a growing
			// pause, and give up only on a listener that keeps failing.
			failures++
			if errors.Is(err, net.ErrClosed) || failures > maxAcceptFailures {
				ln.Close()
				return fmt.Errorf("agent: accept (%d failures in a row): %w", failures, err)
			}
			s.logf("smolvm-agent: accept: %v (retrying)", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(acceptBackoff(failures)):
			}
			continue
		}
		failures = 0
		if !s.track(c) {
			c.Close()
			return nil
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			if err := s.ServeConn(ctx, c); err != nil && !errors.Is(err, io.EOF) {
				s.logf("smolvm-agent: session: %v", err)
			}
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// ServeConn serves one session on c and closes c: handshake, one exec,
// streams, exit status. It returns when the command has exited and its
// status was sent (or could not be), or on a protocol error (which it also
// reports to the peer as an Error frame).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	accepted := time.Now()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	w := &lockedWriter{w: c}
	var hello Hello
	if err := expect(c, FrameHello, &hello); err != nil {
		s.refuse(w, err)
		return fmt.Errorf("agent: handshake: %w", err)
	}
	if err := checkVersion(hello, "the host"); err != nil {
		_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeVersion, Message: err.Error()})
		return err
	}
	name := s.Name
	if name == "" {
		name = "smolvm-agent"
	}
	var reply bytes.Buffer
	if err := writeJSON(&reply, FrameHello, Hello{Version: Version, Agent: name}); err != nil {
		return fmt.Errorf("agent: handshake: %w", err)
	}
	if hello.Then == FrameIdentity {
		// The identity request is already on its way: answer hello and
		// identity together (one vsock packet back instead of two).
		f, err := ReadFrame(c)
		if err == nil && f.Type == FrameIdentity {
			return s.serveIdentity(c, &prefixWriter{w: w, prefix: reply.Bytes()}, f, accepted) // identity.go
		}
		if _, werr := w.Write(reply.Bytes()); werr != nil {
			return fmt.Errorf("agent: handshake: %w", werr)
		}
		if err == nil {
			err = fmt.Errorf("%w: hello announced an identity frame, got %v", ErrMalformed, f.Type)
		}
		s.refuse(w, err)
		return fmt.Errorf("agent: identity request: %w", err)
	}
	if _, err := w.Write(reply.Bytes()); err != nil {
		return fmt.Errorf("agent: handshake: %w", err)
	}
	f, err := ReadFrame(c)
	if err == nil && f.Type == FrameIdentity {
		return s.serveIdentity(c, w, f, accepted) // identity.go
	}
	var req ExecRequest
	if err == nil {
		err = f.expect(FrameExec, &req)
	}
	if err != nil {
		s.refuse(w, err)
		return fmt.Errorf("agent: exec request: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return s.runSession(c, w, req)
}

// refuse tells the peer why its frames were not accepted.
func (s *Server) refuse(w io.Writer, err error) {
	if errors.Is(err, ErrMalformed) {
		_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeMalformed, Message: err.Error()})
	}
}

// lockedWriter serialises frame writes from several goroutines.
// prefixWriter sends prefix in front of the first write (in the same
// write), then passes writes through.
type prefixWriter struct {
	w      io.Writer
	prefix []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.prefix == nil {
		return p.w.Write(b)
	}
	buf := append(p.prefix, b...)
	p.prefix = nil
	n, err := p.w.Write(buf)
	return max(n-(len(buf)-len(b)), 0), err
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// streamWriter turns writes into frames of one type, once started is
// closed (the Started frame must come first).
type streamWriter struct {
	w       io.Writer
	t       FrameType
	started <-chan struct{}
}

func (s streamWriter) Write(p []byte) (int, error) {
	<-s.started
	for off := 0; off < len(p); off += chunkSize {
		end := min(off+chunkSize, len(p))
		if err := WriteFrame(s.w, s.t, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
