package vsock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeGuest is a guest vsock driver in miniature, written against the Mux
// the way a device would drive it: a pump takes packets with NextRx into
// rx buffers of rxSize bytes, sockets send with HandleTx. It checks the host
// side's manners: no data beyond the credit it gave, no packets for
// sockets it does not know except RST.
type fakeGuest struct {
	t        testing.TB
	m        guestLink
	bufAlloc uint32 // receive buffer per socket
	rxSize   int    // size of each rx buffer (header + payload)

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every event
	socks     map[connKey]*gsock
	listeners map[uint32]chan *gsock
	nextPort  uint32
	ignoreReq bool     // drop REQUESTs from the host (a guest that never answers)
	rsts      []Header // RSTs for sockets the guest does not know
	stop      chan struct{}
	done      chan struct{}
}

// gsock is a guest stream socket. key.local is the guest's port, key.peer
// the host's.
type gsock struct {
	g     *fakeGuest
	key   connKey
	state connState // connecting, established, closed
	reset bool
	// orphan: closed by a TRANSPORT_RESET, which tells the host nothing;
	// like Linux the guest answers the host's packets for it with RST.
	orphan bool

	rbuf         []byte
	rxCnt        uint32 // bytes received
	fwdCnt       uint32 // bytes consumed by Read
	lastFwdSent  uint32
	peerBufAlloc uint32
	peerFwdCnt   uint32
	txCnt        uint32
	peerShutdown uint32
	sentShutdown uint32
}

// guestLink is how the fake guest reaches the device: straight to a Mux, or
// through virtqueues of a virtio transport (device_test.go).
type guestLink interface {
	HandleTx(h Header, payload []byte) // the guest sends a packet
	NextRx(buf []byte) int             // the next packet the guest received, or 0
	Wake() <-chan struct{}             // NextRx may have more
}

func newFakeGuest(t testing.TB, m guestLink, bufAlloc uint32, rxSize int) *fakeGuest {
	g := &fakeGuest{
		t: t, m: m, bufAlloc: bufAlloc, rxSize: rxSize,
		changed: make(chan struct{}), socks: make(map[connKey]*gsock),
		listeners: make(map[uint32]chan *gsock), nextPort: 5000,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go g.pump()
	t.Cleanup(g.close)
	return g
}

func (g *fakeGuest) close() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
}

// pump is the guest's rx interrupt handler.
func (g *fakeGuest) pump() {
	defer close(g.done)
	buf := make([]byte, g.rxSize)
	for {
		for {
			n := g.m.NextRx(buf)
			if n == 0 {
				break
			}
			g.deliver(buf[:n])
		}
		select {
		case <-g.stop:
			return
		case <-g.m.Wake():
		}
	}
}

// broadcast wakes every waiter. Caller holds g.mu.
func (g *fakeGuest) broadcast() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// wait blocks until ok() holds (checked under g.mu) or ctx ends.
func (g *fakeGuest) wait(ctx context.Context, ok func() bool) error {
	for !ok() {
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
			g.mu.Lock()
		case <-ctx.Done():
			g.mu.Lock()
			return ctx.Err()
		}
	}
	return nil
}

func (g *fakeGuest) header(s *gsock, op Op) Header {
	return Header{SrcCID: GuestCID, DstCID: HostCID, SrcPort: s.key.local, DstPort: s.key.peer,
		Type: TypeStream, Op: op, BufAlloc: g.bufAlloc, FwdCnt: s.fwdCnt}
}

// send hands a packet to the host. Caller holds g.mu.
func (g *fakeGuest) send(s *gsock, op Op, flags uint32, payload []byte) {
	h := g.header(s, op)
	h.Flags = flags
	h.Len = uint32(len(payload))
	s.lastFwdSent = s.fwdCnt
	g.m.HandleTx(h, payload)
}

func (g *fakeGuest) deliver(pkt []byte) {
	h, err := DecodeHeader(pkt)
	if err != nil {
		g.t.Errorf("guest got a bad packet: %v", err)
		return
	}
	if h.Op == OpRst && h.DstCID == GuestCID && h.Len == 0 && (h.SrcCID != HostCID || h.Type != TypeStream) {
		// An answer to a packet the guest misaddressed.
		g.mu.Lock()
		g.rsts = append(g.rsts, h)
		g.broadcast()
		g.mu.Unlock()
		return
	}
	if h.SrcCID != HostCID || h.DstCID != GuestCID || int(h.Len) != len(pkt)-HeaderSize || h.Type != TypeStream {
		g.t.Errorf("guest got a misaddressed packet: %v (%d bytes)", h, len(pkt))
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.broadcast()
	key := connKey{local: h.DstPort, peer: h.SrcPort}
	s := g.socks[key]
	if h.Op == OpRequest {
		if g.ignoreReq {
			return
		}
		ln, ok := g.listeners[h.DstPort]
		if s != nil || !ok {
			g.m.HandleTx(Header{SrcCID: GuestCID, DstCID: HostCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
				Type: TypeStream, Op: OpRst}, nil)
			return
		}
		s = &gsock{g: g, key: key, state: stateEstablished, peerBufAlloc: h.BufAlloc, peerFwdCnt: h.FwdCnt}
		g.socks[key] = s
		g.send(s, OpResponse, 0, nil)
		select {
		case ln <- s:
		default:
			g.t.Errorf("guest listener on port %d: backlog full", h.DstPort)
		}
		return
	}
	if s == nil || s.state == stateClosed {
		if h.Op == OpRst {
			g.rsts = append(g.rsts, h)
			return
		}
		if s != nil && s.orphan {
			g.m.HandleTx(Header{SrcCID: GuestCID, DstCID: HostCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
				Type: TypeStream, Op: OpRst}, nil)
			return
		}
		g.t.Errorf("guest got %v for no socket", h)
		return
	}
	s.peerBufAlloc, s.peerFwdCnt = h.BufAlloc, h.FwdCnt
	switch h.Op {
	case OpResponse:
		if s.state != stateConnecting {
			g.t.Errorf("guest got RESPONSE on an established socket: %v", h)
		}
		s.state = stateEstablished
	case OpRst:
		s.state, s.reset = stateClosed, true
		delete(g.socks, key)
	case OpRW:
		if s.peerShutdown&ShutdownSend != 0 {
			g.t.Errorf("guest got data after the host's SHUTDOWN(SEND): %v", h)
		}
		if uint32(len(s.rbuf))+h.Len > g.bufAlloc {
			g.t.Errorf("host exceeded the credit: %d buffered + %d > %d", len(s.rbuf), h.Len, g.bufAlloc)
		}
		s.rbuf = append(s.rbuf, pkt[HeaderSize:]...)
		s.rxCnt += h.Len
	case OpShutdown:
		s.peerShutdown |= h.Flags
		if s.peerShutdown == ShutdownBoth {
			// Linux answers a full shutdown with RST.
			g.send(s, OpRst, 0, nil)
			s.state = stateClosed
			delete(g.socks, key)
		}
	case OpCreditRequest:
		g.send(s, OpCreditUpdate, 0, nil)
	case OpCreditUpdate:
	default:
		g.t.Errorf("guest got unexpected %v", h)
	}
}

// transportReset is Linux's answer to VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
// (virtio_vsock_reset_sock): every connected socket is marked closed with
// ECONNRESET and nothing is sent to the host.
func (g *fakeGuest) transportReset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.socks {
		if s.state == stateEstablished {
			s.state, s.reset, s.orphan = stateClosed, true, true
		}
	}
	g.broadcast()
}

// listen returns a channel of accepted sockets on port.
func (g *fakeGuest) listen(port uint32) chan *gsock {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan *gsock, 256)
	g.listeners[port] = ch
	return ch
}

func accept(ctx context.Context, t testing.TB, ch chan *gsock) *gsock {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-ctx.Done():
		t.Fatalf("guest accept: %v", ctx.Err())
		return nil
	}
}

// connect opens a guest connection to host port.
func (g *fakeGuest) connect(ctx context.Context, port uint32) (*gsock, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nextPort++
	s := &gsock{g: g, key: connKey{local: g.nextPort, peer: port}, state: stateConnecting}
	g.socks[s.key] = s
	g.send(s, OpRequest, 0, nil)
	if err := g.wait(ctx, func() bool { return s.state != stateConnecting }); err != nil {
		return nil, fmt.Errorf("connect to host port %d: %w", port, err)
	}
	if s.reset {
		return nil, fmt.Errorf("connect to host port %d: reset", port)
	}
	return s, nil
}

func (s *gsock) credit() uint32 {
	used := s.txCnt - s.peerFwdCnt
	if used >= s.peerBufAlloc {
		return 0
	}
	return s.peerBufAlloc - used
}

var errReset = errors.New("connection reset")

// Write sends p in packets of at most 4 KiB, waiting for credit.
func (s *gsock) Write(ctx context.Context, p []byte) error {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(p) > 0 {
		if err := g.wait(ctx, func() bool { return s.state != stateEstablished || s.credit() > 0 }); err != nil {
			return fmt.Errorf("write (credit %d): %w", s.credit(), err)
		}
		if s.state != stateEstablished {
			return errReset
		}
		n := min(len(p), 4096, int(s.credit()))
		s.txCnt += uint32(n)
		g.send(s, OpRW, 0, p[:n])
		p = p[n:]
	}
	return nil
}

// Read reads what has arrived; io.EOF after the host's SHUTDOWN(SEND).
func (s *gsock) Read(ctx context.Context, p []byte) (int, error) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.wait(ctx, func() bool {
		return len(s.rbuf) > 0 || s.state != stateEstablished || s.peerShutdown&ShutdownSend != 0
	}); err != nil {
		return 0, err
	}
	if len(s.rbuf) == 0 {
		if s.reset {
			return 0, errReset
		}
		return 0, io.EOF
	}
	n := copy(p, s.rbuf)
	s.rbuf = s.rbuf[n:]
	s.fwdCnt += uint32(n)
	// Like Linux: tell the host once its view of our free space is low.
	if s.state == stateEstablished && g.bufAlloc-(s.rxCnt-s.lastFwdSent) < g.bufAlloc/4 {
		g.send(s, OpCreditUpdate, 0, nil)
	}
	return n, nil
}

// ReadAll reads until EOF.
func (s *gsock) ReadAll(ctx context.Context) ([]byte, error) {
	var out []byte
	buf := make([]byte, 8192)
	for {
		n, err := s.Read(ctx, buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// Shutdown sends SHUTDOWN with flags.
func (s *gsock) Shutdown(flags uint32) {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.state == stateEstablished {
		s.sentShutdown |= flags
		g.send(s, OpShutdown, s.sentShutdown, nil)
	}
}

// Close shuts down both ways and waits for the host's RST, as Linux does.
func (s *gsock) Close(ctx context.Context) error {
	s.Shutdown(ShutdownBoth)
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.wait(ctx, func() bool { return s.state == stateClosed })
}

// isReset reports whether the host reset s.
func (s *gsock) isReset() bool {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	return s.reset
}

// waitRst waits for an RST to a packet from guest port.
func (g *fakeGuest) waitRst(ctx context.Context, guestPort uint32) (Header, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var got Header
	err := g.wait(ctx, func() bool {
		for _, h := range g.rsts {
			if h.DstPort == guestPort {
				got = h
				return true
			}
		}
		return false
	})
	return got, err
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip sends req from the host client hc to the guest socket gs and
// answer back (read through br, hc's reader past the OK line), failing t
// (with hint) when either side reads anything else.
func roundTrip(ctx context.Context, t testing.TB, hc net.Conn, br io.Reader, gs *gsock, req, answer, hint string) {
	t.Helper()
	if _, err := hc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(req)+16)
	n, err := gs.Read(ctx, buf)
	if err != nil || string(buf[:n]) != req {
		t.Fatalf("guest read %q, %v; want %q%s", buf[:n], err, req, hint)
	}
	if err := gs.Write(ctx, []byte(answer)); err != nil {
		t.Fatal(err)
	}
	hc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(answer))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != answer {
		t.Fatalf("host read %q, %v; want %q", got, err, answer)
	}
	hc.SetReadDeadline(time.Time{})
}
