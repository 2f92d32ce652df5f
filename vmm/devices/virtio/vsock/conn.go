package vsock

import (
	"net"
	"sync"
	"time"
)

// connKey names a connection by its two ports: local is the host side's port
// (the port a guest connected to, or the port the device allocated for a host
// client), peer is the guest's port.
type connKey struct {
	local, peer uint32
}

// connState is where a connection is in its life.
type connState uint8

const (
	// stateConnecting: a host client asked for it; REQUEST is queued or sent
	// to the guest, waiting for RESPONSE or RST.
	stateConnecting connState = iota
	// stateDialing: the guest asked for it; the device is connecting to the
	// unix socket <path>_<port>.
	stateDialing
	// stateEstablished: data flows both ways.
	stateEstablished
	// stateClosed: torn down; the entry stays in the table only until its
	// RST has been handed to the guest.
	stateClosed
)

// conn is one stream between a guest port and a host unix socket. Every
// field is guarded by the Mux's mutex except sock's methods (net.Conn is safe
// for concurrent use) and the buffers each goroutine owns as documented.
type conn struct {
	key      connKey
	state    connState
	hostInit bool        // a host client asked for it (answer "OK <port>\n")
	sock     net.Conn    // nil while dialing
	cond     *sync.Cond  // on the Mux's mutex: state, pending, credit or wbuf changed
	timer    *time.Timer // host-initiated: the guest's time to answer

	queued bool // in Mux.ready

	// Control packets to hand to the guest, in priority order.
	sendRst, sendRequest, sendResponse, sendCreditUpdate, sendCreditRequest bool
	sendShutdown                                                            uint32 // flags of a SHUTDOWN to send once pending is empty
	shutdownSent                                                            uint32 // flags already sent

	// Host -> guest. The reader goroutine owns rbuf while pending is empty;
	// pending is a slice of rbuf that the device drains into rx buffers.
	rbuf         []byte
	pending      []byte
	hostEOF      bool
	txCnt        uint32 // payload bytes given to the guest
	peerBufAlloc uint32 // guest's receive buffer
	peerFwdCnt   uint32 // bytes the guest has consumed
	creditAsked  bool   // CREDIT_REQUEST sent since the last update

	// Guest -> host. wbuf is appended by HandleTx; the writer goroutine
	// swaps it out to write it.
	wbuf         []byte
	rxCnt        uint32 // payload bytes received from the guest
	fwdCnt       uint32 // of those, bytes written to the host socket
	lastFwdSent  uint32 // fwdCnt as last told to the guest
	peerShutdown uint32 // SHUTDOWN flags received from the guest
	wclosed      bool   // CloseWrite done on the host socket
}

// credit is how many more payload bytes the guest can take now.
func (c *conn) credit() uint32 {
	inFlight := c.txCnt - c.peerFwdCnt // wraps like the counters
	if inFlight >= c.peerBufAlloc {
		return 0
	}
	return c.peerBufAlloc - inFlight
}

// canSendData: there is pending data the guest can take now.
func (c *conn) canSendData() bool {
	return c.state == stateEstablished && len(c.pending) > 0 && c.credit() > 0 && c.peerShutdown&ShutdownRcv == 0
}

// hasWork reports whether nextPacket would produce a packet; held: REQUESTs
// are held back (Mux.holdRequests).
func (c *conn) hasWork(held bool) bool {
	if c.sendRst {
		return true
	}
	if c.state == stateClosed {
		return false
	}
	return (c.sendRequest && !held) || c.sendResponse || c.canSendData() || c.sendCreditUpdate || c.sendCreditRequest ||
		(c.sendShutdown&^c.shutdownSent != 0 && len(c.pending) == 0)
}

// header is the base header of a packet from the host side of c.
func (c *conn) header(m *Mux, op Op) Header {
	return Header{
		SrcCID: HostCID, DstCID: m.guestCID, SrcPort: c.key.local, DstPort: c.key.peer,
		Type: TypeStream, Op: op, BufAlloc: m.cfg.BufAlloc, FwdCnt: c.fwdCnt,
	}
}

// nextPacket encodes c's most urgent packet into dst (header and payload)
// and returns its length, or 0. dst holds at least HeaderSize bytes.
func (c *conn) nextPacket(m *Mux, dst []byte) int {
	var h Header
	switch {
	case c.sendRst:
		c.sendRst = false
		h = c.header(m, OpRst)
		m.remove(c)
	case c.state == stateClosed:
		return 0
	case c.sendRequest && m.holdRequests:
		return 0 // queued again on release (Mux.ReleaseRequests)
	case c.sendRequest:
		c.sendRequest = false
		h = c.header(m, OpRequest)
	case c.sendResponse:
		c.sendResponse = false
		h = c.header(m, OpResponse)
	case c.canSendData():
		n := min(len(c.pending), len(dst)-HeaderSize, int(c.credit()))
		if n <= 0 {
			return 0
		}
		h = c.header(m, OpRW)
		h.Len = uint32(n)
		copy(dst[HeaderSize:], c.pending[:n])
		c.pending = c.pending[n:]
		c.txCnt += uint32(n)
		if len(c.pending) == 0 {
			c.pending = nil
			c.cond.Broadcast() // the reader may refill rbuf
		}
	case c.sendCreditUpdate:
		h = c.header(m, OpCreditUpdate)
	case c.sendCreditRequest:
		c.sendCreditRequest = false
		h = c.header(m, OpCreditRequest)
	case c.sendShutdown&^c.shutdownSent != 0 && len(c.pending) == 0:
		h = c.header(m, OpShutdown)
		h.Flags = c.sendShutdown
		c.shutdownSent |= c.sendShutdown
	default:
		return 0
	}
	// Every packet tells the guest our fwd_cnt, so a separate update is
	// no longer needed.
	c.sendCreditUpdate = false
	c.lastFwdSent = c.fwdCnt
	h.Encode(dst)
	return HeaderSize + int(h.Len)
}

// peerCredit records the guest's buf_alloc and fwd_cnt from any packet it
// sent on c and wakes the reader if that made room.
func (c *conn) peerCredit(h *Header) {
	before := c.credit()
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	if c.credit() > before {
		c.creditAsked = false
		c.cond.Broadcast()
	}
}

// creditDue reports whether the guest's view of our free buffer space has
// fallen low enough, while we have more room than it knows, to send it a
// CREDIT_UPDATE.
func (c *conn) creditDue(bufAlloc uint32) bool {
	if c.fwdCnt == c.lastFwdSent {
		return false
	}
	seen := c.rxCnt - c.lastFwdSent // bytes the guest believes still occupy our buffer
	return bufAlloc-min(seen, bufAlloc) < bufAlloc/4
}

// newConn makes a table entry; the caller adds it to m.conns.
func (m *Mux) newConn(key connKey, state connState) *conn {
	return &conn{key: key, state: state, hostInit: state == stateConnecting, cond: sync.NewCond(&m.mu)}
}
