package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/agent"
)

// TestServe runs the agent's main loop over unix sockets instead of vsock:
// it reports ready to the host's listener, then serves an exec.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	execLn, err := net.Listen("unix", filepath.Join(dir, "exec.sock"))
	if err != nil {
		t.Fatal(err)
	}
	readySock := filepath.Join(dir, "vsock.sock_53")
	readyLn, err := net.Listen("unix", readySock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyCh := make(chan agent.Ready, 1)
	go func() {
		_ = agent.ReadyListener(ctx, readyLn, func(r agent.Ready, _ time.Time) { readyCh <- r }, nil)
	}()
	// The host's ready listener is not there for the first tries.
	tries := 0
	dial := func() (net.Conn, error) {
		tries++
		if tries < 3 {
			return nil, net.ErrClosed
		}
		return net.Dial("unix", readySock)
	}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, execLn, dial) }()

	select {
	case r := <-readyCh:
		if r.Version != agent.Version || r.PID == 0 || r.Kernel == "" || r.Uptime <= 0 {
			t.Errorf("ready %+v: want version, pid, kernel and uptime", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no ready notification")
	}
	c, err := net.Dial("unix", filepath.Join(dir, "exec.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	st, err := agent.Run(ctx, c, agent.Command{Args: []string{"echo", "hi"}, Stdout: &out})
	if err != nil || st.Code != 0 || out.String() != "hi\n" {
		t.Fatalf("exec: %+v %q %v", st, out.String(), err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
}
