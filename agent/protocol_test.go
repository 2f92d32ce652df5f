package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/syncbuf"
)

func TestReadFrame(t *testing.T) {
	hdr := func(typ byte, n uint32) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], n)
		return b
	}
	for _, c := range []struct {
		name    string
		in      []byte
		want    Frame
		is      error
		mention string
	}{
		{"stdout", append(hdr(7, 3), "abc"...), Frame{FrameStdout, []byte("abc")}, nil, ""},
		{"empty stdin", hdr(5, 0), Frame{FrameStdin, []byte{}}, nil, ""},
		{"clean eof", nil, Frame{}, io.EOF, ""},
		{"short header", []byte{7, 0}, Frame{}, io.ErrUnexpectedEOF, ""},
		{"short payload", append(hdr(7, 10), "abc"...), Frame{}, io.ErrUnexpectedEOF, "stdout frame payload (10 bytes)"},
		{"unknown type", hdr(0, 0), Frame{}, ErrMalformed, "unknown frame type 0"},
		{"type 200", append(hdr(200, 1), 'x'), Frame{}, ErrMalformed, "unknown frame type 200"},
		{"oversized", hdr(7, MaxPayload+1), Frame{}, ErrMalformed, "exceeds"},
		{"huge", hdr(3, 0xFFFFFFFF), Frame{}, ErrMalformed, "4294967295"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadFrame(bytes.NewReader(c.in))
			if c.is != nil {
				if !errors.Is(err, c.is) || !strings.Contains(fmt.Sprint(err), c.mention) {
					t.Fatalf("error %v, want %v mentioning %q", err, c.is, c.mention)
				}
				return
			}
			if err != nil || f.Type != c.want.Type || !bytes.Equal(f.Payload, c.want.Payload) {
				t.Fatalf("got %v %q %v, want %v %q", f.Type, f.Payload, err, c.want.Type, c.want.Payload)
			}
		})
	}
}

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xAB}, MaxPayload)}
	for _, p := range payloads {
		if err := WriteFrame(&buf, FrameStderr, p); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range payloads {
		f, err := ReadFrame(&buf)
		if err != nil || f.Type != FrameStderr || !bytes.Equal(f.Payload, p) {
			t.Fatalf("frame %d: %v %d bytes %v", i, f.Type, len(f.Payload), err)
		}
	}
	if err := WriteFrame(&buf, FrameStdout, make([]byte, MaxPayload+1)); err == nil {
		t.Error("WriteFrame accepted an oversized payload")
	}
}

func FuzzReadFrame(f *testing.F) {
	var seed bytes.Buffer
	_ = writeJSON(&seed, FrameHello, Hello{Version: 1})
	_ = writeJSON(&seed, FrameExec, ExecRequest{Args: []string{"true"}})
	f.Add(seed.Bytes())
	f.Add([]byte{7, 0, 0, 0, 1, 'x'})
	f.Add([]byte{9, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			var out bytes.Buffer
			if err := WriteFrame(&out, fr.Type, fr.Payload); err != nil {
				t.Fatal(err)
			}
			back, err := ReadFrame(&out)
			if err != nil || back.Type != fr.Type || !bytes.Equal(back.Payload, fr.Payload) {
				t.Fatalf("round trip of %v changed it: %v", fr.Type, err)
			}
			// Decoding any payload as any message must fail cleanly.
			var h Hello
			var e ExecRequest
			var x ExitStatus
			_, _, _ = fr.decode(&h), fr.decode(&e), fr.decode(&x)
		}
	})
}

// FuzzServeConn feeds arbitrary bytes to a server session: it must answer
// or close, never panic or hang.
func FuzzServeConn(f *testing.F) {
	var ok bytes.Buffer
	_ = writeJSON(&ok, FrameHello, Hello{Version: Version})
	_ = writeJSON(&ok, FrameExec, ExecRequest{Args: []string{"true"}})
	f.Add(ok.Bytes())
	f.Add([]byte{1, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{1, 0, 0, 0, 1, '['})
	f.Fuzz(func(t *testing.T, in []byte) {
		// Only the handshake is fuzzed: a valid exec would run programs.
		if bytes.Contains(in, []byte{byte(FrameExec)}) {
			return
		}
		a, b := net.Pipe()
		defer b.Close()
		srv := &Server{Logf: func(string, ...any) {}}
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), a) }()
		go func() {
			_, _ = b.Write(in)
			b.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, b) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn hung on fuzzed input")
		}
	})
}

// TestServerRejects sends bad openings to a real server and checks it
// answers with an Error frame naming the problem, then closes.
func TestServerRejects(t *testing.T) {
	dial := startServer(t)
	frame := func(typ FrameType, p string) []byte {
		var b bytes.Buffer
		_ = WriteFrame(&b, typ, []byte(p))
		return b.Bytes()
	}
	hello := frame(FrameHello, `{"version":1}`)
	for _, c := range []struct {
		name     string
		send     []byte
		code     string
		mention  string
		hasHello bool
	}{
		{"version 2", frame(FrameHello, `{"version":2}`), CodeVersion, "the host speaks protocol version 2, this side speaks 1", false},
		{"version 0", frame(FrameHello, `{}`), CodeVersion, "version 0", false},
		{"exec first", frame(FrameExec, `{"args":["true"]}`), CodeMalformed, "got a exec frame, want hello", false},
		{"bad json hello", frame(FrameHello, `{"version":`), CodeMalformed, "hello payload", false},
		{"unknown type", []byte{99, 0, 0, 0, 0}, CodeMalformed, "unknown frame type 99", false},
		{"stdout instead of exec", append(append([]byte{}, hello...), frame(FrameStdout, "x")...), CodeMalformed, "got a stdout frame, want exec", true},
		{"bad exec json", append(append([]byte{}, hello...), frame(FrameExec, `{"args":1}`)...), CodeMalformed, "exec payload", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := dial()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(c.send); err != nil {
				t.Fatal(err)
			}
			if c.hasHello {
				var h Hello
				if err := expect(conn, FrameHello, &h); err != nil || h.Version != Version {
					t.Fatalf("server hello %+v: %v", h, err)
				}
			}
			f, err := ReadFrame(conn)
			if err != nil {
				t.Fatal(err)
			}
			var m ErrorMsg
			if f.Type != FrameError || f.decode(&m) != nil || m.Code != c.code || !strings.Contains(m.Message, c.mention) {
				t.Fatalf("got %v %s, want error code %q mentioning %q", f.Type, f.Payload, c.code, c.mention)
			}
			if _, err := ReadFrame(conn); err != io.EOF {
				t.Errorf("after the error frame: %v, want EOF", err)
			}
		})
	}
}

// TestClientRefusesOtherVersion: a fake agent speaking version 2.
func TestClientRefusesOtherVersion(t *testing.T) {
	a, b := net.Pipe()
	go func() {
		defer b.Close()
		var h Hello
		if expect(b, FrameHello, &h) == nil {
			_ = writeJSON(b, FrameHello, Hello{Version: 2, Agent: "future-agent"})
		}
		_, _ = io.Copy(io.Discard, b)
	}()
	_, err := Run(testCtx(t), a, Command{Args: []string{"true"}})
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "the guest agent speaks protocol version 2, this side speaks 1") {
		t.Fatalf("error %v: want ErrVersion naming both versions", err)
	}
}

func TestReady(t *testing.T) {
	for _, c := range []struct {
		name      string
		agentVer  int
		wantError bool
	}{
		{"same version", Version, false},
		{"agent too new", Version + 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			sent := make(chan error, 1)
			go func() {
				if c.agentVer == Version {
					sent <- SendReady(a, Ready{Hostname: "guest", Kernel: "6.1.0", Uptime: 1.5, PID: 42})
					return
				}
				_ = writeJSON(a, FrameHello, Hello{Version: c.agentVer})
				var h Hello
				sent <- expect(a, FrameHello, &h)
			}()
			r, err := ReceiveReady(b)
			serr := <-sent
			if c.wantError {
				if !errors.Is(err, ErrVersion) || !errors.Is(serr, ErrVersion) {
					t.Fatalf("host %v, agent %v: want ErrVersion on both sides", err, serr)
				}
				return
			}
			if err != nil || serr != nil {
				t.Fatalf("host %v, agent %v", err, serr)
			}
			if r != (Ready{Version: Version, Hostname: "guest", Kernel: "6.1.0", Uptime: 1.5, PID: 42}) {
				t.Errorf("ready %+v", r)
			}
		})
	}
}

func TestReadyListener(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock_53")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Ready, 4)
	errs := make(chan error, 4)
	done := make(chan error, 1)
	go func() {
		done <- ReadyListener(ctx, ln, func(r Ready, at time.Time) { got <- r }, func(err error) { errs <- err })
	}()
	// A garbage client first: it must not stop the listener.
	if c, err := net.Dial("unix", sock); err == nil {
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.Close()
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if err := SendReady(c, Ready{Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case r := <-got:
		if r.Hostname != "h" {
			t.Errorf("ready %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ready")
	}
	if err := <-errs; !errors.Is(err, ErrMalformed) {
		t.Errorf("garbage client: %v, want ErrMalformed", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ReadyListener: %v", err)
	}
}

// fakeHybrid is a unix socket speaking Firecracker's CONNECT handshake:
// ports in open are answered "OK" and served by the agent Server; others
// are closed at once.
func fakeHybrid(t *testing.T, open map[uint32]bool, reply string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "vsock.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		srv := &Server{Logf: t.Logf}
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			line, err := readLine(c, 64)
			var port uint32
			if err != nil || func() error { _, err := fmt.Sscanf(line, "CONNECT %d", &port); return err }() != nil || !open[port] {
				c.Close()
				continue
			}
			r := reply
			if r == "" {
				r = "OK 1073741824\n"
			}
			_, _ = io.WriteString(c, r)
			_ = srv.ServeConn(ctx, c)
		}
	}()
	return sock
}

func TestDialHybrid(t *testing.T) {
	sock := fakeHybrid(t, map[uint32]bool{ExecPort: true}, "")
	c, err := DialHybrid(testCtx(t), sock, ExecPort)
	if err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	st, err := Run(testCtx(t), c, Command{Args: []string{"echo", "via hybrid"}, Stdout: &out})
	if err != nil || st.Code != 0 || out.String() != "via hybrid\n" {
		t.Fatalf("status %+v out %q err %v", st, out.String(), err)
	}
	if _, err := DialHybrid(testCtx(t), sock, 99); !errors.Is(err, ErrNotListening) || !strings.Contains(err.Error(), "port 99") {
		t.Errorf("closed port: %v, want ErrNotListening naming port 99", err)
	}
	if _, err := DialHybrid(testCtx(t), filepath.Join(t.TempDir(), "none.sock"), ExecPort); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("missing socket: %v", err)
	}
	bad := fakeHybrid(t, map[uint32]bool{ExecPort: true}, "NOPE\n")
	if _, err := DialHybrid(testCtx(t), bad, ExecPort); err == nil || !strings.Contains(err.Error(), `"NOPE"`) {
		t.Errorf("bad reply: %v", err)
	}
}
