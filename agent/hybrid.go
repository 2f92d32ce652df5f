package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Well-known vsock ports.
const (
	// ExecPort is where the agent listens for sessions.
	ExecPort = 52
	// ReadyPort is where the agent connects (to the host) to say it is up.
	ReadyPort = 53
)

// DialHybrid connects to guest port on a VM's vsock unix socket using
// Firecracker's hybrid convention: write "CONNECT <port>\n", read
// "OK <hostport>\n". A socket that closes without "OK" means nothing
// listens on that port in the guest (ErrNotListening).
func DialHybrid(ctx context.Context, socketPath string, port uint32) (net.Conn, error) {
	return DialHybridWith(ctx, socketPath, port, nil)
}

// DialHybridWith is DialHybrid that sends first right behind the CONNECT
// line, in the same write: smolvm's VMM holds bytes that follow the line
// until the guest has accepted, then forwards them, so a request costs no
// round trip of its own after the OK. If the guest refuses, they go with
// the connection (nothing reached the guest).
func DialHybridWith(ctx context.Context, socketPath string, port uint32, first []byte) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("agent: vsock socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(handshakeTimeout)
	}
	_ = c.SetDeadline(dl)
	if _, err := c.Write(append([]byte(fmt.Sprintf("CONNECT %d\n", port)), first...)); err != nil {
		c.Close()
		return nil, fmt.Errorf("agent: vsock %s: CONNECT %d: %w", socketPath, port, err)
	}
	// Read the reply byte by byte: what follows it belongs to the guest.
	line, err := readLine(c, 64)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: vsock %s: CONNECT %d: %w", socketPath, port, ctx.Err())
		}
		// A socket closed with bytes of ours unread (first) resets.
		if err == io.EOF || err == io.ErrUnexpectedEOF || errors.Is(err, syscall.ECONNRESET) {
			return nil, fmt.Errorf("%w: port %d via %s (connection closed without OK)", ErrNotListening, port, socketPath)
		}
		return nil, fmt.Errorf("agent: vsock %s: CONNECT %d: %w", socketPath, port, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "OK" {
		c.Close()
		return nil, fmt.Errorf("agent: vsock %s: CONNECT %d: unexpected reply %q", socketPath, port, line)
	}
	if _, err := strconv.ParseUint(f[1], 10, 32); err != nil {
		c.Close()
		return nil, fmt.Errorf("agent: vsock %s: CONNECT %d: bad port in reply %q", socketPath, port, line)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// readLine reads up to max bytes until '\n' without reading past it.
func readLine(r io.Reader, max int) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < max {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			if err == io.EOF && len(b) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	return "", fmt.Errorf("reply longer than %d bytes", max)
}
