package vsock

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// acceptLoop accepts host clients until the listener is closed.
func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	for {
		s, err := m.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				m.logf("accept on %s: %v", m.cfg.Path, err)
			}
			return
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			s.Close()
			return
		}
		if len(m.handshakes) >= maxHandshakes {
			m.stats.Refused++
			m.mu.Unlock()
			m.logf("host client on %s refused: %d handshakes in progress", m.cfg.Path, maxHandshakes)
			s.Close()
			continue
		}
		m.handshakes[s] = struct{}{}
		m.wg.Add(1)
		m.mu.Unlock()
		go m.serveHost(s)
	}
}

// maxHandshakes bounds host clients that have connected but not yet sent
// their CONNECT line.
const maxHandshakes = 64

// maxConnectLine bounds the handshake line ("CONNECT 4294967295\n" is 19).
const maxConnectLine = 32

// ParseConnect parses a host client's handshake line, "CONNECT <port>\n"
// with a decimal port, and returns the port.
func ParseConnect(line []byte) (uint32, error) {
	const prefix = "CONNECT "
	s := string(line)
	if len(s) < len(prefix)+2 || s[:len(prefix)] != prefix || s[len(s)-1] != '\n' {
		return 0, fmt.Errorf("%w: %q", ErrBadConnect, s)
	}
	digits := s[len(prefix) : len(s)-1]
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: port %q is not a decimal number", ErrBadConnect, digits)
		}
	}
	port, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: port %q: %v", ErrBadConnect, digits, err)
	}
	return uint32(port), nil
}

// readConnectLine reads up to and including the first '\n', at most
// maxConnectLine bytes.
func readConnectLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for len(line) < maxConnectLine {
		b, err := r.ReadByte()
		if err != nil {
			return line, err
		}
		line = append(line, b)
		if b == '\n' {
			return line, nil
		}
	}
	return line, fmt.Errorf("%w: no newline in the first %d bytes", ErrBadConnect, maxConnectLine)
}

// serveHost runs a host client: handshake, wait for the guest to accept,
// then read the socket for the guest.
func (m *Mux) serveHost(s net.Conn) {
	defer m.wg.Done()
	s.SetReadDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(s, 4096)
	line, err := readConnectLine(br)
	var port uint32
	if err == nil {
		port, err = ParseConnect(line)
	}
	s.SetReadDeadline(time.Time{})

	m.mu.Lock()
	delete(m.handshakes, s)
	if err == nil && m.closed {
		err = ErrClosed
	}
	if err == nil && len(m.conns) >= m.cfg.MaxConns {
		err = ErrTooMany
	}
	if err != nil {
		m.stats.Refused++
		m.mu.Unlock()
		m.logf("host client on %s: %v", m.cfg.Path, err)
		s.Close()
		return
	}
	key := m.allocPort(port)
	c := m.newConn(key, stateConnecting)
	c.sock = s
	c.sendRequest = true
	c.timer = time.AfterFunc(m.cfg.ConnectTimeout, func() { m.connectTimedOut(c) })
	m.conns[key] = c
	m.queue(c)
	m.wg.Add(1)
	go m.writer(c)
	m.mu.Unlock()
	m.reader(c, br)
}

// allocPort picks the host-side port of a connection to guest port peer.
// Caller holds m.mu; the table is not full, so a free port exists.
func (m *Mux) allocPort(peer uint32) connKey {
	for {
		key := connKey{local: m.nextPort, peer: peer}
		m.nextPort++
		if m.nextPort == 0 {
			m.nextPort = firstHostPort
		}
		if _, used := m.conns[key]; !used {
			return key
		}
	}
}

func (m *Mux) connectTimedOut(c *conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.state == stateConnecting {
		if c.sendRequest {
			// Held (HoldRequests): the guest never heard of it.
			m.logf("connection to guest port %d not sent in %v: the restored guest has not yet acted on its transport reset", c.key.peer, m.cfg.ConnectTimeout)
			m.terminate(c, false)
			return
		}
		m.logf("guest did not answer a connection to port %d in %v", c.key.peer, m.cfg.ConnectTimeout)
		m.terminate(c, true)
	}
}

// dial joins a guest-initiated connection to the unix socket Path_<port>.
func (m *Mux) dial(c *conn) {
	defer m.wg.Done()
	path := fmt.Sprintf("%s_%d", m.cfg.Path, c.key.local)
	d := net.Dialer{Timeout: m.cfg.DialTimeout}
	s, err := d.DialContext(m.ctx, "unix", path)
	m.mu.Lock()
	if c.state == stateClosed {
		m.mu.Unlock()
		if s != nil {
			s.Close()
		}
		return
	}
	if err != nil {
		m.logf("guest port %d connecting to %s: %v", c.key.peer, path, err)
		m.terminate(c, true)
		m.mu.Unlock()
		return
	}
	c.sock = s
	c.state = stateEstablished
	c.sendResponse = true
	m.stats.Dialed++
	m.queue(c)
	m.wg.Add(1)
	go m.writer(c)
	m.mu.Unlock()
	m.reader(c, s)
}

// reader moves host data towards the guest: it reads no more than the
// guest's credit and holds at most one buffer (ReadBuf) that the device
// drains into rx packets before the next read.
func (m *Mux) reader(c *conn, r io.Reader) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		for c.state != stateClosed && !(c.state == stateEstablished && c.pending == nil && c.credit() > 0) {
			if c.state == stateEstablished && c.peerShutdown&ShutdownRcv != 0 {
				return // the guest takes no more data
			}
			if c.state == stateEstablished && c.pending == nil && !c.creditAsked {
				c.creditAsked = true
				c.sendCreditRequest = true
				m.queue(c)
			}
			c.cond.Wait()
		}
		if c.state == stateClosed {
			return
		}
		if c.rbuf == nil {
			c.rbuf = make([]byte, m.cfg.ReadBuf)
		}
		n := min(len(c.rbuf), int(c.credit()))
		m.mu.Unlock()
		k, err := r.Read(c.rbuf[:n])
		m.mu.Lock()
		if c.state == stateClosed {
			return
		}
		if k > 0 && c.peerShutdown&ShutdownRcv == 0 {
			c.pending = c.rbuf[:k]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.hostEOF = true
				c.sendShutdown |= ShutdownSend
			} else {
				m.logf("reading host socket of port %d: %v", c.key.local, err)
				m.terminate(c, true)
			}
		}
		m.queue(c)
		if err != nil {
			return
		}
	}
}

// closeWriter is a socket that can be half-closed.
type closeWriter interface{ CloseWrite() error }

// writer moves guest data to the host socket. For a host client it first
// answers "OK <port>\n" once the guest has accepted.
func (m *Mux) writer(c *conn) {
	defer m.wg.Done()
	m.mu.Lock()
	defer m.mu.Unlock()
	for c.state == stateConnecting || c.state == stateDialing {
		c.cond.Wait()
	}
	if c.state == stateClosed {
		return
	}
	if c.hostInit {
		m.mu.Unlock()
		_, err := fmt.Fprintf(c.sock, "OK %d\n", c.key.local)
		m.mu.Lock()
		if err != nil {
			m.terminate(c, true)
			return
		}
	}
	var spare []byte
	for {
		for c.state == stateEstablished && len(c.wbuf) == 0 && c.peerShutdown&ShutdownSend == 0 {
			c.cond.Wait()
		}
		if c.state == stateClosed {
			return
		}
		if len(c.wbuf) == 0 { // the guest sends no more: half-close
			c.wclosed = true
			if cw, ok := c.sock.(closeWriter); ok {
				cw.CloseWrite()
			}
			if c.peerShutdown == ShutdownBoth {
				m.terminate(c, true)
			}
			return
		}
		buf := c.wbuf
		c.wbuf = spare[:0]
		m.mu.Unlock()
		n, err := c.sock.Write(buf)
		m.mu.Lock()
		spare = buf
		if c.state == stateClosed {
			return
		}
		c.fwdCnt += uint32(n)
		if err != nil {
			m.logf("writing host socket of port %d: %v", c.key.local, err)
			m.terminate(c, true)
			return
		}
		if c.creditDue(m.cfg.BufAlloc) {
			c.sendCreditUpdate = true
		}
		m.queue(c)
	}
}
