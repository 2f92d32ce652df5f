package vsock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// MuxConfig configures the connection table and its unix-socket host side.
// Zero fields take the defaults below.
type MuxConfig struct {
	// Path is the unix socket host clients connect to ("CONNECT <port>\n");
	// a guest connecting to host port P reaches the unix socket Path_P.
	// Empty: no listener, and guest-initiated connections are refused.
	Path string
	// GuestCID is the guest's context ID (default GuestCID, 3).
	GuestCID uint64
	// BufAlloc is the receive buffer advertised to the guest per
	// connection: the most guest data held for a slow host socket.
	BufAlloc uint32
	// ReadBuf is the most host data read ahead per connection.
	ReadBuf int
	// MaxConns bounds the connection table (host memory per connection is
	// at most 2*BufAlloc + ReadBuf).
	MaxConns int
	// ConnectTimeout bounds how long a host client waits for the guest to
	// accept, and HandshakeTimeout how long it may take to send its
	// CONNECT line. DialTimeout bounds connecting to Path_P.
	ConnectTimeout, HandshakeTimeout, DialTimeout time.Duration
	// CloseTimeout bounds flushing guest data to a host socket after the
	// guest closed its end.
	CloseTimeout time.Duration
	// Logf, if set, receives one line per refused or failed connection.
	Logf func(format string, args ...any)
}

// Defaults for MuxConfig.
const (
	DefaultBufAlloc         = 256 << 10
	DefaultReadBuf          = 64 << 10
	DefaultMaxConns         = 256
	DefaultConnectTimeout   = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultDialTimeout      = 2 * time.Second
	DefaultCloseTimeout     = 2 * time.Second
	// maxQueuedRsts bounds RSTs for packets that match no connection.
	maxQueuedRsts = 256
	// firstHostPort is where ports for host-initiated connections start
	// (as in Firecracker, far above what guests use).
	firstHostPort = 1 << 30
)

func (c *MuxConfig) fill() {
	if c.GuestCID == 0 {
		c.GuestCID = GuestCID
	}
	if c.BufAlloc == 0 {
		c.BufAlloc = DefaultBufAlloc
	}
	if c.ReadBuf <= 0 {
		c.ReadBuf = DefaultReadBuf
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
}

// Stats counts what the connection table has seen.
type Stats struct {
	Conns            int    // open now
	Accepted         uint64 // host clients that completed CONNECT and were accepted by the guest
	Dialed           uint64 // guest connections joined to a host socket
	Refused          uint64 // connections refused or reset before being established
	Resets           uint64 // RSTs sent to the guest
	BadPackets       uint64 // malformed or misaddressed packets from the guest
	CreditViolations uint64 // guest sent beyond the credit it was given
	DroppedRsts      uint64 // RST replies dropped because too many were queued
}

// Mux is the connection table behind a virtio-vsock device: it turns the
// guest's packets (HandleTx) into unix-socket traffic and host traffic into
// packets for the guest (NextRx). The device calls HandleTx and NextRx from
// one goroutine; Wake signals that NextRx has something new. Per connection
// the Mux runs one goroutine reading the host socket and one writing it.
type Mux struct {
	cfg      MuxConfig
	guestCID uint64
	ctx      context.Context
	cancel   context.CancelFunc
	ln       *net.UnixListener
	wg       sync.WaitGroup
	wake     chan struct{}

	mu         sync.Mutex
	closed     bool
	conns      map[connKey]*conn
	ready      []*conn // connections with packets for the guest, each once
	rsts       []Header
	nextPort   uint32
	handshakes map[net.Conn]struct{}
	stats      Stats
	// holdRequests: REQUESTs for host clients wait (HoldRequests).
	holdRequests bool
}

// NewMux starts a connection table; with cfg.Path set it listens there
// (a stale socket file at Path is replaced). Close releases everything.
func NewMux(cfg MuxConfig) (*Mux, error) {
	cfg.fill()
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		cfg: cfg, guestCID: cfg.GuestCID, ctx: ctx, cancel: cancel,
		wake:       make(chan struct{}, 1),
		conns:      make(map[connKey]*conn),
		nextPort:   firstHostPort,
		handshakes: make(map[net.Conn]struct{}),
	}
	if cfg.Path != "" {
		if err := removeStaleSocket(cfg.Path); err != nil {
			cancel()
			return nil, err
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Path, Net: "unix"})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("vsock: listen on %s: %w", cfg.Path, err)
		}
		m.ln = ln
		m.wg.Add(1)
		go m.acceptLoop()
	}
	return m, nil
}

// removeStaleSocket removes a unix socket left at path; anything else there
// is an error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vsock: %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("vsock: %s exists and is not a socket", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("vsock: remove stale socket: %w", err)
	}
	return nil
}

// Wake has a value whenever NextRx may have a new packet.
func (m *Mux) Wake() <-chan struct{} { return m.wake }

func (m *Mux) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *Mux) logf(format string, args ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf("vsock: "+format, args...)
	}
}

// Stats returns the counters.
func (m *Mux) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Conns = len(m.conns)
	return s
}

// queue puts c on the ready list if it has a packet for the guest.
// Caller holds m.mu.
func (m *Mux) queue(c *conn) {
	if !c.queued && c.hasWork(m.holdRequests) {
		c.queued = true
		m.ready = append(m.ready, c)
		m.signal()
	}
}

// remove deletes c from the table. Caller holds m.mu.
func (m *Mux) remove(c *conn) {
	if m.conns[c.key] == c {
		delete(m.conns, c.key)
	}
}

// terminate closes c's host socket and stops its goroutines; with rst the
// guest is sent an RST before the entry leaves the table. Caller holds m.mu.
func (m *Mux) terminate(c *conn, rst bool) {
	if c.state == stateClosed {
		return
	}
	if c.state != stateEstablished {
		m.stats.Refused++
	}
	c.state = stateClosed
	c.pending = nil
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.sock != nil {
		c.sock.Close()
	}
	c.cond.Broadcast()
	if rst {
		c.sendRst = true
		m.stats.Resets++
		m.queue(c)
	} else {
		m.remove(c)
	}
}

// replyRst queues an RST answering h, a packet that matches no connection.
// Caller holds m.mu.
func (m *Mux) replyRst(h *Header) {
	if h.Op == OpRst {
		return
	}
	if len(m.rsts) >= maxQueuedRsts {
		m.stats.DroppedRsts++
		return
	}
	m.rsts = append(m.rsts, Header{
		SrcCID: h.DstCID, DstCID: h.SrcCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: h.Type, Op: OpRst,
	})
	m.stats.Resets++
	m.signal()
}

// HasRx reports whether NextRx would produce a packet now.
func (m *Mux) HasRx() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rsts) > 0 {
		return true
	}
	for len(m.ready) > 0 {
		if m.ready[0].hasWork(m.holdRequests) {
			return true
		}
		m.ready[0].queued = false
		m.ready = m.ready[1:]
	}
	return false
}

// NextRx encodes the next packet for the guest (header, then payload) into
// dst and returns its length, or 0 if there is none. dst must hold at least
// HeaderSize bytes; payloads are cut to fit it. Connections take turns.
func (m *Mux) NextRx(dst []byte) int {
	if len(dst) < HeaderSize {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rsts) > 0 {
		m.rsts[0].Encode(dst)
		m.rsts = m.rsts[1:]
		if len(m.rsts) == 0 {
			m.rsts = nil
		}
		return HeaderSize
	}
	for len(m.ready) > 0 {
		c := m.ready[0]
		m.ready = m.ready[1:]
		c.queued = false
		n := c.nextPacket(m, dst)
		m.queue(c) // to the back of the line if it has more
		if n > 0 {
			return n
		}
	}
	m.ready = nil
	return 0
}

// HoldRequests makes connections that host clients ask for wait before
// their REQUEST goes to the guest, until ReleaseRequests. A restored device
// holds them while the guest has not yet acted on its TRANSPORT_RESET
// event: Linux handles that event asynchronously (its event work item, on
// whichever vCPU took the event queue's interrupt) by marking every
// connected socket closed without telling the host, so a connection the
// guest accepted before that would die silently while the host waits on it.
// A held connection still ends at ConnectTimeout if the guest never answers.
func (m *Mux) HoldRequests() {
	m.mu.Lock()
	m.holdRequests = true
	m.mu.Unlock()
}

// ReleaseRequests ends HoldRequests: held REQUESTs go to the guest.
func (m *Mux) ReleaseRequests() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.holdRequests {
		return
	}
	m.holdRequests = false
	for _, c := range m.conns {
		m.queue(c)
	}
}

// NewPortEpoch moves the ports given to host clients' connections to a
// random place in [firstHostPort, 2^32). A restored guest may still hold
// sockets of its previous life with the ports the snapshot's host side
// used, marked closed by TRANSPORT_RESET but not yet closed by their
// programs (or waiting out a close): Linux answers a REQUEST that matches
// such a socket's pair of ports with RST, so a new Mux counting from
// firstHostPort again would see its first connections refused.
func (m *Mux) NewPortEpoch() {
	m.mu.Lock()
	m.nextPort = firstHostPort + rand.Uint32N(3<<30-1<<20)
	m.mu.Unlock()
}

// Holding reports whether REQUESTs are held.
func (m *Mux) Holding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holdRequests
}

// Reset drops every connection without telling the guest (its driver is
// being reset, or the machine was restored and the guest is sent a
// transport reset event instead). Host clients see their sockets close.
func (m *Mux) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		m.terminate(c, false)
	}
	m.ready, m.rsts = nil, nil
}

// Close drops every connection, stops listening and waits for the Mux's
// goroutines to finish.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, c := range m.conns {
		m.terminate(c, false)
	}
	m.ready, m.rsts = nil, nil
	for s := range m.handshakes {
		s.Close()
	}
	m.mu.Unlock()
	m.cancel()
	var err error
	if m.ln != nil {
		err = m.ln.Close() // also unlinks the socket file
	}
	m.wg.Wait()
	return err
}
