package usernet

import (
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/smolvm/smolvm/vmm/network"
)

// dialGuestTimeout bounds a connection attempt to the guest (a guest
// without the service, or not up yet, must not hold a host connection
// open forever).
const dialGuestTimeout = 10 * time.Second

// guestDialer reaches the guest through the virtual network.
type guestDialer interface {
	DialContextTCP(ctx context.Context, addr string) (net.Conn, error)
}

// tcpForward accepts on a host listener and splices each connection to the
// guest's port through the virtual network.
type tcpForward struct {
	spec network.PortForward
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (t *tcpForward) serve(ctx context.Context, d guestDialer) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return // closed
		}
		if !t.track(c) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(c)
			t.splice(ctx, d, c)
		}()
	}
}

func (t *tcpForward) splice(ctx context.Context, d guestDialer, hc net.Conn) {
	dctx, cancel := context.WithTimeout(ctx, dialGuestTimeout)
	gc, err := d.DialContextTCP(dctx, guestAddr(t.spec.GuestPort))
	cancel()
	if err != nil {
		hc.Close()
		return
	}
	if !t.track(gc) {
		gc.Close()
		hc.Close()
		return
	}
	defer t.untrack(gc)
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		// Half-close so the other side sees EOF and can still answer.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go pipe(gc, hc)
	go pipe(hc, gc)
	wg.Wait()
}

func (t *tcpForward) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = map[net.Conn]struct{}{}
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tcpForward) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

// close stops accepting, closes open connections and waits for their
// goroutines.
func (t *tcpForward) close() error {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	err := t.ln.Close()
	t.wg.Wait()
	return err
}
