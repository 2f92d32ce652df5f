package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Server serves a VM's control socket.
type Server struct {
	m       Machine
	started time.Time

	mu    sync.Mutex
	info  Info
	state State
	ready *time.Time
	agent *AgentInfo
	busy  bool         // a pause, resume or snapshot is in progress
	snap  SnapshotFunc // PUT /snapshot (snapshot.go); nil: refused
}

// NewServer returns a server for m, described by info, started now.
func NewServer(m Machine, info Info) *Server {
	if info.PID == 0 {
		info.PID = os.Getpid()
	}
	return &Server{m: m, info: info, state: StateRunning, started: time.Now()}
}

// SetReady records the guest agent's ready notification, received at at.
func (s *Server) SetReady(a AgentInfo, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready, s.agent = &at, &a
}

// SetStopping marks the VM as stopping (its process is shutting down).
func (s *Server) SetStopping() {
	s.mu.Lock()
	s.state = StateStopping
	s.mu.Unlock()
}

// Status returns the current status.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Info: s.info, State: s.state, StartedAt: s.started, Ready: s.ready != nil, ReadyAt: s.ready, Agent: s.agent}
	if s.ready != nil {
		st.ReadySeconds = s.ready.Sub(s.started).Seconds()
	}
	return st
}

// Handler is the HTTP API (docs/CONTROL.md).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", s.only(http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, s.Status())
	}))
	mux.HandleFunc("/pause", s.only(http.MethodPut, s.pause))
	mux.HandleFunc("/resume", s.only(http.MethodPut, s.resume))
	mux.HandleFunc("/snapshot", s.only(http.MethodPut, s.snapshot))
	mux.HandleFunc("/stop", s.only(http.MethodPut, func(w http.ResponseWriter, r *http.Request) {
		s.SetStopping()
		s.m.Stop()
		reply(w, http.StatusAccepted, s.Status())
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, apiError{fmt.Sprintf("no endpoint %s (have GET /status, PUT /pause, /resume, /snapshot, /stop)", r.URL.Path)})
	})
	return mux
}

func (s *Server) only(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			reply(w, http.StatusMethodNotAllowed, apiError{fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, method)})
			return
		}
		h(w, r)
	}
}

// claimLocked marks the server busy with a pause, resume or snapshot, under
// s.mu; on a stopping or busy VM it unlocks s.mu, answers 409 and returns
// false.
func (s *Server) claimLocked(w http.ResponseWriter) bool {
	switch {
	case s.state == StateStopping:
		s.mu.Unlock()
		reply(w, http.StatusConflict, apiError{"the VM is stopping"})
		return false
	case s.busy:
		s.mu.Unlock()
		reply(w, http.StatusConflict, apiError{"another pause, resume or snapshot is in progress"})
		return false
	}
	s.busy = true
	return true
}

// transition runs a pause or resume: one at a time, never on a stopping VM.
func (s *Server) transition(w http.ResponseWriter, to State, do func() error) {
	s.mu.Lock()
	if !s.claimLocked(w) {
		return
	}
	s.mu.Unlock()
	err := do()
	s.mu.Lock()
	s.busy = false
	if err == nil && s.state != StateStopping {
		s.state = to
	}
	s.mu.Unlock()
	if err != nil {
		reply(w, http.StatusInternalServerError, apiError{err.Error()})
		return
	}
	reply(w, http.StatusOK, s.Status())
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	s.transition(w, StatePaused, func() error {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		return s.m.Pause(ctx)
	})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	s.transition(w, StateRunning, func() error { s.m.Resume(); return nil })
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen creates the control socket at path (removing a leftover socket
// file first).
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: listen: %w", err)
	}
	return ln, nil
}

// Serve answers requests on ln until ctx is done; then it closes ln and
// waits (at most 5 s) for requests in progress.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("control: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-errc
	return nil
}
