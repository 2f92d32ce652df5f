package vsock

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCreditExhaustion: a reader that stops for a while makes the writer
// run out of credit; when it resumes everything arrives, in both
// directions, without the host exceeding the guest's credit (the fake guest
// fails the test if it does) or the guest overrunning the host's.
func TestCreditExhaustion(t *testing.T) {
	m := newTestMux(t, MuxConfig{BufAlloc: 16 << 10})
	g := newFakeGuest(t, m, 8<<10, 4096)
	ctx := testCtx(t)
	hc, gs := openPair(t, ctx, m, g, true, 52)
	data := randomBytes(256<<10, 3)

	// Host -> guest with the guest not reading.
	go hc.w.Write(data)
	waitFor(t, "host->guest stalls on credit", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(gs.rbuf) == int(g.bufAlloc)
	})
	got := make([]byte, 0, len(data))
	buf := make([]byte, 1000)
	for len(got) < len(data) {
		n, err := gs.Read(ctx, buf)
		if err != nil {
			t.Fatalf("guest read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("host->guest: got sha %s want %s", sha(got), sha(data))
	}

	// Guest -> host with the host not reading: the guest blocks on credit.
	werr := make(chan error, 1)
	go func() { werr <- gs.Write(ctx, data) }()
	waitFor(t, "guest->host stalls on credit", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return gs.credit() == 0
	})
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-werr:
		t.Fatalf("guest write of %d bytes finished with the host not reading: %v", len(data), err)
	default:
	}
	back := make([]byte, len(data))
	if _, err := io.ReadFull(hc.r, back); err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatalf("guest->host: got sha %s want %s", sha(back), sha(data))
	}
	if s := m.Stats(); s.CreditViolations != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestCreditViolation: a guest that ignores the host's credit is reset.
func TestCreditViolation(t *testing.T) {
	m := newTestMux(t, MuxConfig{BufAlloc: 4096})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	_, gs := openPair(t, ctx, m, g, true, 52) // the host never reads
	g.mu.Lock()
	for range 3 {
		g.send(gs, OpRW, 0, make([]byte, 2048))
	}
	g.mu.Unlock()
	waitFor(t, "reset", gs.isReset)
	if s := m.Stats(); s.CreditViolations != 1 {
		t.Errorf("stats %+v: want 1 credit violation", s)
	}
}

// TestGuestRst: an RST from the guest closes the host socket.
func TestGuestRst(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	hc, gs := openPair(t, ctx, m, g, false, 53)
	g.mu.Lock()
	g.send(gs, OpRst, 0, nil)
	g.mu.Unlock()
	if b, err := io.ReadAll(hc.r); err != nil || len(b) != 0 {
		t.Fatalf("host read after RST: %q, %v; want EOF", b, err)
	}
	waitFor(t, "table empty", func() bool { return m.Stats().Conns == 0 })
}

// TestCloseWithOpenConnections: Close returns promptly with connections in
// every state, and host sockets see EOF.
func TestCloseWithOpenConnections(t *testing.T) {
	dir, _ := os.MkdirTemp("", "vsock")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "v.sock")
	m, err := NewMux(MuxConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	hc, _ := openPair(t, ctx, m, g, true, 52)   // established, host-initiated
	hc2, _ := openPair(t, ctx, m, g, false, 53) // established, guest-initiated
	idle, _ := net.Dial("unix", path)           // in the handshake
	t.Cleanup(func() { idle.Close() })
	g.mu.Lock()
	g.ignoreReq = true
	g.mu.Unlock()
	pending, _ := net.Dial("unix", path) // waiting for the guest
	t.Cleanup(func() { pending.Close() })
	pending.Write([]byte("CONNECT 52\n"))
	waitFor(t, "pending connection", func() bool { return m.Stats().Conns == 3 })

	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	for i, r := range []io.Reader{hc.r, hc2.r, idle, pending} {
		if c, ok := r.(net.Conn); ok {
			c.SetDeadline(time.Now().Add(5 * time.Second))
		}
		if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
			t.Errorf("socket %d after Close: %q, %v; want EOF", i, b, err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
	if m.NextRx(make([]byte, 4096)) != 0 {
		t.Error("packets after Close")
	}
}

func TestStaleSocket(t *testing.T) {
	dir, _ := os.MkdirTemp("", "vsock")
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "v.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves the file, as a killed VMM would
	m, err := NewMux(MuxConfig{Path: path})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	m.Close()
	os.WriteFile(path, nil, 0o600)
	if _, err := NewMux(MuxConfig{Path: path}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("a regular file at the path: %v, want an error", err)
	}
}

func TestTooManyConnections(t *testing.T) {
	m := newTestMux(t, MuxConfig{MaxConns: 2})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	openPair(t, ctx, m, g, true, 52)
	openPair(t, ctx, m, g, false, 53)
	if _, _, _, err := hostConnect(t, m, 52); err == nil {
		t.Error("host connection beyond MaxConns accepted")
	}
	hostListen(t, m, 54)
	if _, err := g.connect(ctx, 54); err == nil {
		t.Error("guest connection beyond MaxConns accepted")
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestHandshakeBound: host clients that never send CONNECT are bounded;
// the next one is closed at once, and a real client gets through once the
// idle ones time out.
func TestHandshakeBound(t *testing.T) {
	m := newTestMux(t, MuxConfig{HandshakeTimeout: 500 * time.Millisecond})
	g := newFakeGuest(t, m, 64<<10, 4096)
	var idle []net.Conn
	for range maxHandshakes {
		c, err := net.Dial("unix", m.cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
		t.Cleanup(func() { c.Close() })
	}
	waitFor(t, "handshakes in progress", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.handshakes) == maxHandshakes
	})
	extra, err := net.Dial("unix", m.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(extra); err != nil || len(b) != 0 {
		t.Fatalf("client beyond the bound: %q, %v; want closed", b, err)
	}
	for _, c := range idle {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(c) // closed by the handshake timeout
	}
	g.listen(52)
	if _, _, _, err := hostConnect(t, m, 52); err != nil {
		t.Fatalf("connect after the idle clients timed out: %v", err)
	}
}
