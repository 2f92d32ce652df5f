package pager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager/uffd"
)

// DefaultRequestTimeout bounds a request whose context has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// Client is the VMM side of one registered VM: it hands the daemon its
// userfaultfd and memory layout, and reports through Err when nobody will
// serve the VM's faults any more (the daemon died, or a frame cannot be
// had). The VMM must then stop the VM; it keeps its own userfaultfd open
// meanwhile, because closing the last copy would let the kernel fill missing
// pages with zeros.
type Client struct {
	conn *net.UnixConn
	wmu  sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan *message
	closing bool

	errc    chan error
	errOnce sync.Once
	done    chan struct{} // reader exited
	stop    chan struct{} // closed by Close: ends the heartbeat
}

// Dial connects to the daemon's socket and does the hello exchange.
func Dial(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("pager: dial %s: %w", socket, err)
	}
	return NewClient(ctx, c.(*net.UnixConn))
}

// NewClient runs the client protocol on an open connection (a socketpair
// in tests); it owns conn from now on.
func NewClient(ctx context.Context, conn *net.UnixConn) (*Client, error) {
	c := &Client{conn: conn, pending: map[uint64]chan *message{}, errc: make(chan error, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go c.readLoop()
	r, err := c.call(ctx, &message{Type: msgHello, Version: ProtocolVersion}, -1)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("pager: hello: %w", err)
	}
	if r.Version != ProtocolVersion {
		c.Close()
		return nil, fmt.Errorf("%w: daemon speaks version %d, want %d", ErrProtocol, r.Version, ProtocolVersion)
	}
	return c, nil
}

// RegisterOptions says what the daemon does besides serving faults.
type RegisterOptions struct {
	// Record the working set from now until Ready.
	Record bool
	// Prefetch these pages in order in the background.
	Prefetch *WorkingSet
}

// Register hands the daemon uffdFD (a userfaultfd on which regions are
// registered for missing faults, see NewUserfaultfd) and the regions'
// layout. The caller keeps uffdFD open until the VM has stopped.
func (c *Client) Register(ctx context.Context, uffdFD int, regions []Region, opt RegisterOptions) error {
	_, err := c.call(ctx, &message{Type: msgRegister, Regions: regions, Record: opt.Record, Prefetch: opt.Prefetch}, uffdFD)
	return err
}

// Ready tells the daemon the guest is up: recording stops, and the working
// set recorded since Register comes back (empty unless Record was set).
func (c *Client) Ready(ctx context.Context) (*WorkingSet, error) {
	r, err := c.call(ctx, &message{Type: msgReady}, -1)
	if err != nil {
		return nil, err
	}
	if r.WorkingSet == nil {
		return nil, fmt.Errorf("%w: ready reply without a working set", ErrProtocol)
	}
	return r.WorkingSet, nil
}

// Stats returns the daemon's counters for this VM.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	r, err := c.call(ctx, &message{Type: msgStats}, -1)
	if err != nil {
		return Stats{}, err
	}
	if r.Stats == nil {
		return Stats{}, fmt.Errorf("%w: stats reply without stats", ErrProtocol)
	}
	return *r.Stats, nil
}

// WaitPrefetch waits (at most wait, and ctx) until the daemon has worked
// through the prefetch list given at Register, then returns the stats:
// PrefetchDone is false when wait ran out first. When serving the VM failed
// first (Err delivers that error too) it returns an error. A daemon that does not
// know the request (an older one) answers ErrRejected: poll Stats then.
func (c *Client) WaitPrefetch(ctx context.Context, wait time.Duration) (Stats, error) {
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < wait+DefaultRequestTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+DefaultRequestTimeout)
		defer cancel()
	}
	r, err := c.call(ctx, &message{Type: msgWaitPrefetch, WaitMs: max(wait.Milliseconds(), 1)}, -1)
	if err != nil {
		return Stats{}, err
	}
	if r.Stats == nil {
		return Stats{}, fmt.Errorf("%w: wait_prefetch reply without stats", ErrProtocol)
	}
	if r.Error != "" {
		return *r.Stats, fmt.Errorf("%w: prefetch stopped: %s", ErrFrameUnavailable, r.Error)
	}
	return *r.Stats, nil
}

// Err delivers at most one error: a *FaultError (errors.Is
// ErrFrameUnavailable) or ErrDaemonGone. After it, the VM's faults are not
// served: stop the VM.
func (c *Client) Err() <-chan error { return c.errc }

// Close tells the daemon the VM is gone (bounded wait) and closes the
// connection. It does not close the userfaultfd.
func (c *Client) Close() error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.mu.Unlock()
	if already {
		<-c.done
		return nil
	}
	close(c.stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	c.call(ctx, &message{Type: msgClose}, -1)
	cancel()
	err := c.conn.Close()
	<-c.done
	return err
}

// Heartbeat asks the daemon for stats every interval and reports
// ErrDaemonGone through Err when an answer takes longer than timeout: a
// daemon that is alive but stuck (stopped, wedged) is caught as well as one
// that died. It runs until Close.
func (c *Client) Heartbeat(interval, timeout time.Duration) {
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-c.done:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			_, err := c.Stats(ctx)
			cancel()
			if err != nil && errors.Is(err, context.DeadlineExceeded) {
				c.fail(fmt.Errorf("%w: no answer in %v", ErrDaemonGone, timeout))
				return
			}
		}
	}()
}

func (c *Client) fail(err error) {
	c.errOnce.Do(func() { c.errc <- err })
}

func (c *Client) readLoop() {
	defer close(c.done)
	rd := newReader(c.conn)
	defer rd.closeFDs()
	for {
		m, err := rd.read()
		var pe *payloadError
		if errors.As(err, &pe) {
			c.fail(fmt.Errorf("pager: daemon sent %w", err))
			continue
		}
		if err != nil {
			c.mu.Lock()
			closing := c.closing
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			if !closing {
				if err == io.EOF {
					c.fail(fmt.Errorf("%w: socket closed by the daemon", ErrDaemonGone))
				} else {
					c.fail(fmt.Errorf("%w: %v", ErrDaemonGone, err))
				}
			}
			return
		}
		if m.Type == msgFaultError {
			fe := m.Fault
			if fe == nil {
				fe = &FaultError{Frame: -1, Page: -1, Reason: m.Error}
			}
			c.fail(fe)
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		} else if m.Type == msgError {
			c.fail(fmt.Errorf("%w: %s", ErrRejected, m.Error))
		}
	}
}

// call sends m (with fd attached when >= 0) and waits for its reply, bounded
// by ctx or DefaultRequestTimeout.
func (c *Client) call(ctx context.Context, m *message, fd int) (*message, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	ch := make(chan *message, 1)
	c.mu.Lock()
	c.nextID++
	m.ID = c.nextID
	c.pending[m.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}()
	c.wmu.Lock()
	deadline, _ := ctx.Deadline()
	c.conn.SetWriteDeadline(deadline)
	err := writeMessage(c.conn, m, fd)
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%w: connection closed awaiting %s reply", ErrDaemonGone, m.Type)
		}
		if r.Type == msgError {
			return nil, fmt.Errorf("%w: %s", ErrRejected, r.Error)
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("pager: %s: no reply: %w", m.Type, ctx.Err())
	}
}

// NewUserfaultfd creates a userfaultfd (no extra features) and registers
// every region on it for missing faults: the VMM side's first step. The
// caller owns the fd and keeps it open until the VM has stopped.
func NewUserfaultfd(regions []Region) (int, error) {
	fd, err := uffd.New()
	if err != nil {
		return -1, err
	}
	if _, _, err := uffd.API(fd, 0); err != nil {
		unix.Close(fd)
		return -1, err
	}
	for _, r := range regions {
		if _, err := uffd.Register(fd, uintptr(r.HostAddr), r.Length, uffd.ModeMissing); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("pager: region %s: %w", r.Artifact, err)
		}
	}
	return fd, nil
}

// HostAddr is the address of b's first byte, for Region.HostAddr.
func HostAddr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// PageSize re-exports the page size regions are aligned to.
const PageSize = format.PageSize

// Attach is the VMM side in one call: it creates a userfaultfd with regions
// registered, connects to the daemon at socket (DaemonSocket(mountpoint)),
// and registers. The caller owns both results: Close the client when the VM
// has stopped, then close the fd; until then watch c.Err().
func Attach(ctx context.Context, socket string, regions []Region, opt RegisterOptions) (c *Client, uffdFD int, err error) {
	fd, err := NewUserfaultfd(regions)
	if err != nil {
		return nil, -1, err
	}
	c, err = Dial(ctx, socket)
	if err != nil {
		unix.Close(fd)
		return nil, -1, err
	}
	if err := c.Register(ctx, fd, regions, opt); err != nil {
		c.Close()
		unix.Close(fd)
		return nil, -1, fmt.Errorf("pager: register with %s: %w", socket, err)
	}
	return c, fd, nil
}
