package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMachine records calls; pauseErr makes Pause fail.
type fakeMachine struct {
	mu       sync.Mutex
	calls    []string
	pauseErr error
}

func (f *fakeMachine) record(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}
func (f *fakeMachine) Pause(ctx context.Context) error { f.record("pause"); return f.pauseErr }
func (f *fakeMachine) Resume()                         { f.record("resume") }
func (f *fakeMachine) Stop()                           { f.record("stop") }
func (f *fakeMachine) Calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

func startControl(t *testing.T, m Machine) (*Server, *Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), ControlSocketName)
	srv := NewServer(m, Info{Name: "vm1", CPUs: 2, MemBytes: 256 << 20, StateDir: filepath.Dir(sock)})
	ln, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	return srv, NewClient(sock), sock
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServerAPI(t *testing.T) {
	m := &fakeMachine{}
	srv, c, _ := startControl(t, m)
	ctx := tctx(t)

	st, err := c.Status(ctx)
	if err != nil || st.Name != "vm1" || st.State != StateRunning || st.Ready || st.CPUs != 2 || st.PID == 0 {
		t.Fatalf("status %+v %v", st, err)
	}
	at := time.Now()
	srv.SetReady(AgentInfo{Version: 1, Hostname: "smolvm", Kernel: "6.1"}, at)
	st, _ = c.Status(ctx)
	if !st.Ready || st.Agent == nil || st.Agent.Kernel != "6.1" || st.ReadyAt == nil || !st.ReadyAt.Equal(at) || st.ReadySeconds <= 0 {
		t.Errorf("after ready: %+v", st)
	}
	for _, step := range []struct {
		do    func(context.Context) (Status, error)
		state State
	}{
		{c.Pause, StatePaused}, {c.Pause, StatePaused}, {c.Resume, StateRunning}, {c.Stop, StateStopping},
	} {
		st, err := step.do(ctx)
		if err != nil || st.State != step.state {
			t.Fatalf("got %v %v, want %v", st.State, err, step.state)
		}
	}
	if _, err := c.Pause(ctx); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("pause while stopping: %v", err)
	}
	if got := m.Calls(); got != "pause,pause,resume,stop" {
		t.Errorf("machine calls %s", got)
	}
}

func TestServerErrors(t *testing.T) {
	m := &fakeMachine{pauseErr: errors.New("vCPU 1 would not stop")}
	_, c, sock := startControl(t, m)
	ctx := tctx(t)
	if _, err := c.Pause(ctx); err == nil || !strings.Contains(err.Error(), "vCPU 1 would not stop") {
		t.Errorf("failed pause: %v", err)
	}
	if st, _ := c.Status(ctx); st.State != StateRunning {
		t.Errorf("state after a failed pause: %v", st.State)
	}
	for _, r := range []struct {
		method, path string
		code         int
		mention      string
	}{
		{http.MethodPost, "/status", http.StatusMethodNotAllowed, "use GET"},
		{http.MethodGet, "/stop", http.StatusMethodNotAllowed, "use PUT"},
		{http.MethodGet, "/snapshot", http.StatusMethodNotAllowed, "use PUT"},
		{http.MethodGet, "/migrate", http.StatusNotFound, "no endpoint /migrate"},
	} {
		req, _ := http.NewRequestWithContext(ctx, r.method, "http://x"+r.path, nil)
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e apiError
		_ = decodeJSON(resp, &e)
		if resp.StatusCode != r.code || !strings.Contains(e.Error, r.mention) {
			t.Errorf("%s %s: %d %q, want %d mentioning %q", r.method, r.path, resp.StatusCode, e.Error, r.code, r.mention)
		}
	}
	dead := NewClient(filepath.Join(filepath.Dir(sock), "nobody.sock"))
	if _, err := dead.Status(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("status of a missing socket: %v, want ErrNotRunning", err)
	}
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
