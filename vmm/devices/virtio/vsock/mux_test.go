package vsock

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// newTestMux starts a Mux listening in a fresh short directory (unix socket
// paths are limited to 108 bytes).
func newTestMux(t testing.TB, cfg MuxConfig) *Mux {
	t.Helper()
	dir, err := os.MkdirTemp("", "vsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Path = filepath.Join(dir, "v.sock")
	m, err := NewMux(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// hostConnect connects a host client to guest port and returns the socket
// and the host port from "OK <port>\n".
func hostConnect(t testing.TB, m *Mux, port uint32) (net.Conn, *bufio.Reader, uint32, error) {
	t.Helper()
	c, err := net.Dial("unix", m.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return c, nil, 0, err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return c, br, 0, fmt.Errorf("no OK line (got %q): %w", line, err)
	}
	var hp uint32
	if _, err := fmt.Sscanf(line, "OK %d\n", &hp); err != nil {
		return c, br, 0, fmt.Errorf("bad OK line %q: %w", line, err)
	}
	return c, br, hp, nil
}

// hostListen listens on the unix socket for guest connections to port.
func hostListen(t testing.TB, m *Mux, port uint32) net.Listener {
	t.Helper()
	ln, err := net.Listen("unix", fmt.Sprintf("%s_%d", m.cfg.Path, port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestHostConnect(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	ln := g.listen(52)
	hc, br, hp, err := hostConnect(t, m, 52)
	if err != nil {
		t.Fatal(err)
	}
	if hp < firstHostPort {
		t.Errorf("host port %d, want >= %d", hp, firstHostPort)
	}
	gs := accept(ctx, t, ln)
	if gs.key.peer != hp {
		t.Errorf("guest sees host port %d, OK said %d", gs.key.peer, hp)
	}
	roundTrip(ctx, t, hc, br, gs, "ping", "pong", "")
	if err := gs.Close(ctx); err != nil {
		t.Fatalf("guest close: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("host read after guest close: %v, want EOF", err)
	}
	if s := m.Stats(); s.Accepted != 1 || s.Conns != 0 {
		t.Errorf("stats %+v: want 1 accepted, 0 open", s)
	}
}

func TestHostConnectRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ignore bool // guest never answers: the connect timeout fires
	}{{"rst", false}, {"timeout", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMux(t, MuxConfig{ConnectTimeout: 300 * time.Millisecond})
			g := newFakeGuest(t, m, 64<<10, 4096)
			g.ignoreReq = tc.ignore
			_, _, _, err := hostConnect(t, m, 77)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("connect to a closed guest port: %v, want EOF before OK", err)
			}
			if s := m.Stats(); s.Refused != 1 || s.Accepted != 0 {
				t.Errorf("stats %+v: want 1 refused", s)
			}
		})
	}
}

func TestBadConnectLine(t *testing.T) {
	m := newTestMux(t, MuxConfig{HandshakeTimeout: 300 * time.Millisecond})
	newFakeGuest(t, m, 64<<10, 4096)
	for i, line := range []string{"CONNEC 5\n", "CONNECT x\n", "CONNECT 99999999999\n", "connect 5\n",
		"CONNECT " + strings.Repeat("1", 40) + "\n", "CONNECT 5"} {
		c, err := net.Dial("unix", m.cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(line))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(b) != 0 {
			t.Errorf("line %q: read %q, %v; want the socket closed", line, b, err)
		}
		if s := m.Stats(); s.Refused != uint64(i+1) {
			t.Errorf("line %q: %d refused, want %d", line, s.Refused, i+1)
		}
	}
}

func TestGuestConnect(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	ln := hostListen(t, m, 53)
	type res struct {
		got []byte
		err error
	}
	done := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- res{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		got, err := io.ReadAll(c) // until the guest's SHUTDOWN(SEND)
		if err == nil {
			_, err = c.Write([]byte("ready ack"))
		}
		done <- res{got, err}
	}()
	gs, err := g.connect(ctx, 53)
	if err != nil {
		t.Fatal(err)
	}
	if err := gs.Write(ctx, []byte("ready v1")); err != nil {
		t.Fatal(err)
	}
	gs.Shutdown(ShutdownSend)
	r := <-done
	if r.err != nil || string(r.got) != "ready v1" {
		t.Fatalf("host got %q, %v", r.got, r.err)
	}
	got, err := gs.ReadAll(ctx)
	if err != nil || string(got) != "ready ack" {
		t.Fatalf("guest got %q, %v after the host closed", got, err)
	}
	if err := gs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.Dialed != 1 {
		t.Errorf("stats %+v: want 1 dialed", s)
	}
}

func TestGuestConnectRefused(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	if _, err := g.connect(testCtx(t), 99); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("connect to a host port nobody listens on: %v, want reset", err)
	}
	// Without a Path the device refuses every guest connection.
	m2, err := NewMux(MuxConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	g2 := newFakeGuest(t, m2, 64<<10, 4096)
	if _, err := g2.connect(testCtx(t), 53); err == nil {
		t.Fatal("connect without a host side succeeded")
	}
}

// TestRstUnknown: packets that match no connection, or that the host side
// cannot serve, are answered with RST; RSTs are not.
func TestRstUnknown(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	for i, h := range []Header{
		{Op: OpRW, Len: 3, DstCID: HostCID},
		{Op: OpShutdown, Flags: ShutdownBoth, DstCID: HostCID},
		{Op: OpCreditRequest, DstCID: HostCID},
		{Op: OpResponse, DstCID: HostCID},
		{Op: OpRequest, DstCID: 7},                            // another CID
		{Op: OpRequest, DstCID: HostCID, Type: TypeSeqpacket}, // not a stream
	} {
		h.SrcCID, h.SrcPort, h.DstPort = GuestCID, uint32(7000+i), 1234
		if h.Type == 0 {
			h.Type = TypeStream
		}
		m.HandleTx(h, make([]byte, h.Len))
		rst, err := g.waitRst(ctx, h.SrcPort)
		if err != nil {
			t.Fatalf("%v: no RST: %v", h, err)
		}
		if rst.SrcPort != h.DstPort || rst.SrcCID != h.DstCID || rst.DstCID != GuestCID {
			t.Errorf("RST %v does not answer %v", rst, h)
		}
	}
	before := m.Stats().Resets
	m.HandleTx(Header{SrcCID: GuestCID, DstCID: HostCID, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRst}, nil)
	m.HandleTx(Header{SrcCID: 9, DstCID: HostCID, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRW}, nil)
	if s := m.Stats(); s.Resets != before || s.BadPackets != 3 {
		t.Errorf("stats %+v: an RST or a spoofed source was answered, or bad packets miscounted", s)
	}
}

// sha is a hex digest for messages.
func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b))[:16] }

// TestBulk moves 1 MiB each way at once on one connection, for both ways of
// opening it, with several rx buffer sizes (payload cut to fit).
func TestBulk(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hostInit  bool
		rxSize    int
		guestBuf  uint32
		hostAlloc uint32
	}{
		{"host-init", true, 4096, 256 << 10, 0},
		{"guest-init", false, 4096, 256 << 10, 0},
		{"small-rx", true, HeaderSize + 1, 64 << 10, 0},
		{"large-rx-small-credit", false, 65536 + HeaderSize, 8 << 10, 16 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMux(t, MuxConfig{BufAlloc: tc.hostAlloc})
			g := newFakeGuest(t, m, tc.guestBuf, tc.rxSize)
			ctx := testCtx(t)
			size := 1 << 20
			if tc.rxSize < 100 {
				size = 64 << 10 // one byte per packet
			}
			up, down := randomBytes(size, 1), randomBytes(size, 2)
			hc, gs := openPair(t, ctx, m, g, tc.hostInit, 60)
			errs := make(chan error, 3)
			go func() { // host writes down, then half-closes
				_, err := hc.w.Write(down)
				if err == nil {
					err = hc.c.(*net.UnixConn).CloseWrite()
				}
				errs <- err
			}()
			go func() { // guest writes up, then half-closes
				err := gs.Write(ctx, up)
				gs.Shutdown(ShutdownSend)
				errs <- err
			}()
			var hostGot []byte
			go func() {
				var err error
				hostGot, err = io.ReadAll(hc.r)
				errs <- err
			}()
			guestGot, err := gs.ReadAll(ctx)
			if err != nil {
				t.Fatalf("guest read: %v (%d bytes)", err, len(guestGot))
			}
			for range 3 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(guestGot, down) {
				t.Errorf("guest got %d bytes sha %s, want %d sha %s", len(guestGot), sha(guestGot), len(down), sha(down))
			}
			if !bytes.Equal(hostGot, up) {
				t.Errorf("host got %d bytes sha %s, want %d sha %s", len(hostGot), sha(hostGot), len(up), sha(up))
			}
			if err := gs.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if s := m.Stats(); s.CreditViolations != 0 || s.Conns != 0 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// hostEnd is the host side of a test connection.
type hostEnd struct {
	c net.Conn
	r io.Reader
	w io.Writer
}

// openPair opens a connection between a host socket and a guest socket,
// from the host (CONNECT) or from the guest (to Path_port).
func openPair(t testing.TB, ctx context.Context, m *Mux, g *fakeGuest, hostInit bool, port uint32) (hostEnd, *gsock) {
	t.Helper()
	if hostInit {
		ln := g.listen(port)
		c, br, _, err := hostConnect(t, m, port)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return hostEnd{c, br, c}, accept(ctx, t, ln)
	}
	ln := hostListen(t, m, port)
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	gs, err := g.connect(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	c := <-acc
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return hostEnd{c, c, c}, gs
}

// TestHalfClose: each side's SHUTDOWN(SEND) reaches the other as EOF while
// the other way stays open.
func TestHalfClose(t *testing.T) {
	for _, hostFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("hostFirst=%v", hostFirst), func(t *testing.T) {
			m := newTestMux(t, MuxConfig{})
			g := newFakeGuest(t, m, 64<<10, 4096)
			ctx := testCtx(t)
			hc, gs := openPair(t, ctx, m, g, true, 52)
			if hostFirst {
				hc.w.Write([]byte("request"))
				hc.c.(*net.UnixConn).CloseWrite()
				got, err := gs.ReadAll(ctx)
				if err != nil || string(got) != "request" {
					t.Fatalf("guest got %q, %v; want request then EOF", got, err)
				}
				if err := gs.Write(ctx, []byte("reply")); err != nil {
					t.Fatalf("guest write after the host's half-close: %v", err)
				}
				buf := make([]byte, 5)
				if _, err := io.ReadFull(hc.r, buf); err != nil || string(buf) != "reply" {
					t.Fatalf("host got %q, %v", buf, err)
				}
			} else {
				gs.Write(ctx, []byte("request"))
				gs.Shutdown(ShutdownSend)
				buf := make([]byte, 7)
				if _, err := io.ReadFull(hc.r, buf); err != nil || string(buf) != "request" {
					t.Fatalf("host got %q, %v", buf, err)
				}
				if n, err := hc.r.Read(buf); err != io.EOF {
					t.Fatalf("host read after the guest's SHUTDOWN(SEND): %d, %v; want EOF", n, err)
				}
				hc.w.Write([]byte("reply"))
				rb := make([]byte, 5)
				n, err := gs.Read(ctx, rb)
				if err != nil || string(rb[:n]) != "reply" {
					t.Fatalf("guest got %q, %v", rb[:n], err)
				}
			}
			if err := gs.Close(ctx); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}
}

// TestManyConnections runs 64 echo connections at once, half opened by
// each side.
func TestManyConnections(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 32<<10, 4096)
	ctx := testCtx(t)
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		hc, gs := openPair(t, ctx, m, g, i%2 == 0, uint32(100+i))
		wg.Add(2)
		go func() { // host: echo until EOF
			defer wg.Done()
			_, err := io.Copy(hc.w, hc.r)
			if err == nil {
				err = hc.c.(*net.UnixConn).CloseWrite()
			}
			if err != nil {
				errs <- fmt.Errorf("conn %d host echo: %w", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			msg := randomBytes(64<<10, uint64(i))
			werr := make(chan error, 1)
			go func() { werr <- gs.Write(ctx, msg); gs.Shutdown(ShutdownSend) }()
			got, err := gs.ReadAll(ctx)
			if err == nil {
				err = <-werr
			}
			if err == nil && !bytes.Equal(got, msg) {
				err = fmt.Errorf("echo of %d bytes came back as %d bytes", len(msg), len(got))
			}
			if err == nil {
				err = gs.Close(ctx)
			}
			if err != nil {
				errs <- fmt.Errorf("conn %d guest: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := m.Stats(); s.Conns != 0 || s.Accepted != n/2 || s.Dialed != n/2 {
		t.Errorf("stats %+v: want all closed, %d accepted, %d dialed", s, n/2, n/2)
	}
}
