package vsock

import "time"

// HandleTx acts on one packet the guest put on the tx queue. payload is the
// packet's data (len(payload) == h.Len); it is copied, not kept. HandleTx
// never blocks on a host socket.
func (m *Mux) HandleTx(h Header, payload []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if h.SrcCID != m.guestCID || uint32(len(payload)) != h.Len {
		m.stats.BadPackets++
		m.logf("dropped packet with bad source or length: %v (payload %d bytes)", h, len(payload))
		return
	}
	if h.DstCID != HostCID || h.Type != TypeStream {
		m.stats.BadPackets++
		m.replyRst(&h)
		return
	}
	key := connKey{local: h.DstPort, peer: h.SrcPort}
	c := m.conns[key]
	if h.Op == OpRequest {
		m.guestConnect(key, c, &h)
		return
	}
	if c == nil || c.state == stateClosed {
		m.replyRst(&h)
		return
	}
	c.peerCredit(&h)
	switch h.Op {
	case OpResponse:
		if c.state != stateConnecting {
			m.terminate(c, true)
			return
		}
		c.state = stateEstablished
		c.timer.Stop()
		m.stats.Accepted++
		c.cond.Broadcast()
	case OpRst:
		m.terminate(c, false)
		return
	case OpShutdown:
		m.guestShutdown(c, h.Flags&ShutdownBoth)
	case OpRW:
		if c.state != stateEstablished || c.peerShutdown&ShutdownSend != 0 {
			m.terminate(c, true)
			return
		}
		if uint64(c.rxCnt-c.fwdCnt)+uint64(h.Len) > uint64(m.cfg.BufAlloc) {
			m.stats.CreditViolations++
			m.logf("guest port %d -> %d sent %d bytes with %d of credit left; reset", c.key.peer, c.key.local, h.Len, m.cfg.BufAlloc-(c.rxCnt-c.fwdCnt))
			m.terminate(c, true)
			return
		}
		if len(payload) > 0 {
			c.wbuf = append(c.wbuf, payload...)
			c.rxCnt += h.Len
			c.cond.Broadcast()
		}
	case OpCreditUpdate:
		// peerCredit did the work.
	case OpCreditRequest:
		c.sendCreditUpdate = true
	default:
		m.stats.BadPackets++
		m.terminate(c, true)
		return
	}
	m.queue(c)
}

// guestConnect handles a REQUEST: the guest connects to host port key.local,
// which is joined to the unix socket Path_<port> by a dialing goroutine.
func (m *Mux) guestConnect(key connKey, c *conn, h *Header) {
	if c != nil {
		// A second REQUEST on a live pair of ports is a protocol error.
		if c.state != stateClosed {
			m.terminate(c, true)
		} else {
			m.replyRst(h)
		}
		return
	}
	if m.cfg.Path == "" || len(m.conns) >= m.cfg.MaxConns {
		m.stats.Refused++
		m.logf("guest connection to port %d refused (%d connections open)", key.local, len(m.conns))
		m.replyRst(h)
		return
	}
	c = m.newConn(key, stateDialing)
	c.peerCredit(h)
	m.conns[key] = c
	m.wg.Add(1)
	go m.dial(c)
}

// guestShutdown records SHUTDOWN flags from the guest. SEND: once its data
// is written, the host socket is half-closed. RCV: no more data goes to the
// guest. Both: the connection ends with an RST once the data is written (the
// guest waits for that RST to finish its close).
func (m *Mux) guestShutdown(c *conn, flags uint32) {
	c.peerShutdown |= flags
	if c.peerShutdown&ShutdownRcv != 0 {
		c.pending = nil
	}
	if c.peerShutdown == ShutdownBoth {
		if c.wclosed || c.state != stateEstablished {
			m.terminate(c, true)
			return
		}
		if c.sock != nil {
			c.sock.SetWriteDeadline(time.Now().Add(m.cfg.CloseTimeout))
		}
	}
	c.cond.Broadcast()
}
