package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// SendReady is the agent's side of the ready notification: on conn (a
// connection to the host's ReadyPort) it sends its Hello and r, then waits
// briefly for the host's answer (a Hello, or an Error if the host refuses
// the version).
func SendReady(conn net.Conn, r Ready) error {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	r.Version = Version
	if err := writeJSON(conn, FrameHello, Hello{Version: Version, Agent: "smolvm-agent"}); err != nil {
		return fmt.Errorf("agent: ready: %w", err)
	}
	if err := writeJSON(conn, FrameReady, r); err != nil {
		return fmt.Errorf("agent: ready: %w", err)
	}
	var h Hello
	if err := expect(conn, FrameHello, &h); err != nil {
		return fmt.Errorf("agent: ready: host answered: %w", err)
	}
	return checkVersion(h, "the host")
}

// ReceiveReady is the host's side: it reads the agent's Hello and Ready
// from conn, refuses a version mismatch (telling the agent too) and
// answers with its own Hello.
func ReceiveReady(conn net.Conn) (Ready, error) {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	var h Hello
	if err := expect(conn, FrameHello, &h); err != nil {
		return Ready{}, fmt.Errorf("agent: ready: %w", err)
	}
	if err := checkVersion(h, "the guest agent"); err != nil {
		_ = writeJSON(conn, FrameError, ErrorMsg{Code: CodeVersion, Message: err.Error()})
		return Ready{}, err
	}
	var r Ready
	if err := expect(conn, FrameReady, &r); err != nil {
		return Ready{}, fmt.Errorf("agent: ready: %w", err)
	}
	if err := writeJSON(conn, FrameHello, hostHello); err != nil {
		return r, fmt.Errorf("agent: ready: answer: %w", err)
	}
	return r, nil
}

// ReadyListener accepts ready notifications on ln (the unix socket
// "<vsock socket>_53" on the host) and calls onReady for each valid one,
// with the time it arrived; onError gets refused ones. It returns when ctx
// is done or ln fails, having closed ln.
func ReadyListener(ctx context.Context, ln net.Listener, onReady func(Ready, time.Time), onError func(error)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("agent: ready listener: %w", err)
		}
		at := time.Now()
		r, err := ReceiveReady(c)
		c.Close()
		switch {
		case err == nil:
			onReady(r, at)
		case onError != nil && !errors.Is(err, io.EOF):
			onError(err)
		}
	}
}
