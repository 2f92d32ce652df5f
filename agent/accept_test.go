package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/syncbuf"
)

// flakyListener fails its first accepts with errs, then hands out conns.
type flakyListener struct {
	mu     sync.Mutex
	errs   []error
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *flakyListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *flakyListener) Addr() net.Addr { return &net.UnixAddr{Name: "flaky", Net: "unix"} }

func TestServeSurvivesAcceptErrors(t *testing.T) {
	old := acceptBackoff
	acceptBackoff = func(int) time.Duration { return time.Millisecond }
	t.Cleanup(func() { acceptBackoff = old })
	for _, c := range []struct {
		name    string
		errs    []error
		serves  bool
		mention string
	}{
		{"transient", []error{syscall.EINTR, syscall.ECONNABORTED, syscall.EMFILE}, true, ""},
		{"listener closed", []error{net.ErrClosed}, false, "use of closed"},
		{"keeps failing", func() []error {
			var e []error
			for i := 0; i <= maxAcceptFailures; i++ {
				e = append(e, syscall.EINVAL)
			}
			return e
		}(), false, "51 failures in a row"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln := &flakyListener{errs: c.errs, conns: make(chan net.Conn, 1), closed: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := &Server{Logf: func(string, ...any) {}}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			if !c.serves {
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), c.mention) {
						t.Fatalf("Serve: %v, want an error mentioning %q", err, c.mention)
					}
				case <-time.After(2 * time.Minute):
					t.Fatal("Serve did not give up")
				}
				return
			}
			a, b := net.Pipe()
			ln.conns <- a
			var out syncbuf.Buffer
			st, err := Run(testCtx(t), b, Command{Args: []string{"echo", "ok"}, Stdout: &out})
			if err != nil || st.Code != 0 || out.String() != "ok\n" {
				t.Fatalf("exec after accept errors: %+v %q %v", st, out.String(), err)
			}
			cancel()
			if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("Serve after cancel: %v", err)
			}
		})
	}
}
