package agent

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/syncbuf"
)

// startServer runs a Server on a unix socket in a temp dir and returns a
// dial function; the server is stopped (and its sessions ended) at cleanup.
func startServer(t *testing.T) func() net.Conn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Logf: t.Logf, WaitDelay: 500 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of cancel")
		}
	})
	return func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

// testCtx bounds every test session.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run runs args on the test server and returns stdout, stderr and status.
func run(t *testing.T, dial func() net.Conn, cmd Command) (string, string, ExitStatus, error) {
	t.Helper()
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	st, err := Run(testCtx(t), dial(), cmd)
	return out.String(), errOut.String(), st, err
}

func context2(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx, cancel
}
