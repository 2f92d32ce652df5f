package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// identityServer serves on a unix socket with identity as the Identity
// hook (nil: none) and returns a dialer.
func identityServer(t *testing.T, identity func(IdentityRequest) IdentityResult) func() net.Conn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Logf: t.Logf, Identity: identity}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of cancel")
		}
	})
	return func() net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}

func TestSetIdentity(t *testing.T) {
	var mu sync.Mutex
	var got []IdentityRequest
	fake := func(r IdentityRequest) IdentityResult {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		res := IdentityResult{Uptime: 1.5}
		if len(r.Entropy) > 0 {
			res.Applied = append(res.Applied, "entropy", "reseed")
		}
		if r.Hostname == "bad" {
			res.Errors = append(res.Errors, "hostname: invalid")
		} else if r.Hostname != "" {
			res.Applied = append(res.Applied, "hostname")
		}
		return res
	}
	tests := []struct {
		name       string
		identity   func(IdentityRequest) IdentityResult
		req        IdentityRequest
		wantErr    string // substring; "" = success
		wantApply  string // joined Applied
		wantErrors int
	}{
		{"all", fake, IdentityRequest{Entropy: bytes.Repeat([]byte{7}, 64), Hostname: "clone-1", MachineID: strings.Repeat("ab", 16), TimeUnixNano: 1}, "", "entropy,reseed,hostname", 0},
		{"step fails", fake, IdentityRequest{Hostname: "bad"}, "", "", 1},
		{"too much entropy", fake, IdentityRequest{Entropy: make([]byte, MaxIdentityEntropy+1)}, "malformed", "", 0},
		{"agent without identity", nil, IdentityRequest{Hostname: "x"}, "cannot apply an identity", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dial := identityServer(t, tc.identity)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := SetIdentity(ctx, dial(), tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a := strings.Join(res.Applied, ","); a != tc.wantApply || len(res.Errors) != tc.wantErrors {
				t.Fatalf("result %+v, want applied %q and %d errors", res, tc.wantApply, tc.wantErrors)
			}
			if res.Uptime != 1.5 {
				t.Fatalf("uptime %v not passed through", res.Uptime)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 || got[0].Hostname != "clone-1" || len(got[0].Entropy) != 64 || got[0].MachineID != strings.Repeat("ab", 16) {
		t.Fatalf("the agent saw %+v", got)
	}
}

// TestExecAfterIdentity: the same server still runs commands (the first
// frame after hello decides the session's kind).
func TestExecAfterIdentity(t *testing.T) {
	dial := identityServer(t, func(IdentityRequest) IdentityResult { return IdentityResult{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := SetIdentity(ctx, dial(), IdentityRequest{Hostname: "h"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := Run(ctx, dial(), Command{Args: []string{"sh", "-c", "echo hi"}, Stdout: &out})
	if err != nil || st.Code != 0 || out.String() != "hi\n" {
		t.Fatalf("exec after identity: %q %+v %v", out.String(), st, err)
	}
}

// TestSetIdentitySlowApply: applying the identity may take longer than the
// handshake's bound (a restored guest faulting its memory in page by page):
// the answer still reaches the host.
func TestSetIdentitySlowApply(t *testing.T) {
	old := handshakeTimeout
	handshakeTimeout = 300 * time.Millisecond
	t.Cleanup(func() { handshakeTimeout = old })
	dial := identityServer(t, func(IdentityRequest) IdentityResult {
		time.Sleep(600 * time.Millisecond)
		return IdentityResult{Applied: []string{"hostname"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := SetIdentity(ctx, dial(), IdentityRequest{Hostname: "slow"})
	if err != nil {
		t.Fatalf("SetIdentity with a slow apply: %v", err)
	}
	if len(res.Applied) != 1 || res.Applied[0] != "hostname" {
		t.Errorf("result %+v", res)
	}
	if res.ApplyS < 0.6 {
		t.Errorf("apply_s %v for a 600 ms apply", res.ApplyS)
	}
}

// TestIdentityWaitTime: wait_s counts from the agent's accept to the whole
// request, apply_s only the apply: a host that sends 300 ms after connecting
// shows in the first, not the second.
func TestIdentityWaitTime(t *testing.T) {
	dial := identityServer(t, func(IdentityRequest) IdentityResult {
		return IdentityResult{Applied: []string{"hostname"}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dial()
	time.Sleep(300 * time.Millisecond)
	res, err := SetIdentity(ctx, conn, IdentityRequest{Hostname: "late"})
	if err != nil {
		t.Fatalf("SetIdentity: %v", err)
	}
	if res.WaitS < 0.29 || res.ApplyS >= 0.29 {
		t.Errorf("wait_s %v apply_s %v, want wait >= 0.3 s and a fast apply", res.WaitS, res.ApplyS)
	}
}

// TestSetIdentityOneRoundTrip: the host sends hello and the request
// together, so a restored clone's identity costs one round trip: an agent
// that reads both frames before answering anything gets both (with a host
// that waited for the hello answer first, it would wait for ever).
func TestSetIdentityOneRoundTrip(t *testing.T) {
	host, agent, err := unixPair()
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	go func() {
		_ = agent.SetDeadline(time.Now().Add(5 * time.Second))
		var h Hello
		var req IdentityRequest
		if expect(agent, FrameHello, &h) != nil || expect(agent, FrameIdentity, &req) != nil {
			return // the host then fails on EOF or its deadline
		}
		_ = writeJSON(agent, FrameHello, Hello{Version: Version, Agent: "fake"})
		_ = writeJSON(agent, FrameIdentityDone, IdentityResult{Applied: []string{"hostname:" + req.Hostname}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := SetIdentity(ctx, host, IdentityRequest{Hostname: "clone-1"})
	if err != nil {
		t.Fatalf("SetIdentity against an agent that reads both frames first: %v", err)
	}
	if len(res.Applied) != 1 || res.Applied[0] != "hostname:clone-1" {
		t.Fatalf("applied %v", res.Applied)
	}
}

// unixPair is a connected pair of unix stream sockets (buffered, unlike
// net.Pipe).
func unixPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

// TestDialIdentity: CONNECT, hello and the request leave in one write (a
// hybrid socket that reads all three before it says OK gets them: no round
// trip waits for the OK), connected is called once the OK came, and a
// guest that refuses the connection gives ErrNotListening without it.
func TestDialIdentity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		refuse bool
	}{{"accepted", false}, {"refused", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "v.sock")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				line, err := readLine(c, 64)
				if err != nil || line != "CONNECT 52" || tc.refuse {
					return
				}
				var h Hello
				var req IdentityRequest
				if expect(c, FrameHello, &h) != nil || expect(c, FrameIdentity, &req) != nil {
					return
				}
				_, _ = c.Write([]byte("OK 1073741824\n"))
				_ = writeJSON(c, FrameHello, Hello{Version: Version, Agent: "fake"})
				_ = writeJSON(c, FrameIdentityDone, IdentityResult{Applied: []string{"hostname:" + req.Hostname}})
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			connected := false
			res, err := DialIdentity(ctx, 2*time.Second, sock, IdentityRequest{Hostname: "clone-2"}, func() { connected = true })
			if tc.refuse {
				if !errors.Is(err, ErrNotListening) || connected {
					t.Fatalf("refused: err %v, connected %v; want ErrNotListening, not connected", err, connected)
				}
				return
			}
			if err != nil || !connected {
				t.Fatalf("err %v, connected %v", err, connected)
			}
			if len(res.Applied) != 1 || res.Applied[0] != "hostname:clone-2" {
				t.Fatalf("applied %v", res.Applied)
			}
		})
	}
}

// countingConn counts the writes made on a connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// TestServeIdentityOneWrite: a host hello that announces the identity
// request (Then) gets hello and identity-done back in one write (one vsock
// packet from the guest); a plain hello gets them in two, as before.
func TestServeIdentityOneWrite(t *testing.T) {
	for _, tc := range []struct {
		name       string
		then       FrameType
		wantWrites int
	}{{"announced", FrameIdentity, 1}, {"plain", 0, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			host, guest, err := unixPair()
			if err != nil {
				t.Fatal(err)
			}
			cc := &countingConn{Conn: guest}
			srv := &Server{Identity: func(req IdentityRequest) IdentityResult {
				return IdentityResult{Applied: []string{"hostname:" + req.Hostname}}
			}}
			done := make(chan error, 1)
			go func() { done <- srv.ServeConn(context.Background(), cc) }()
			hello := hostHello
			hello.Then = tc.then
			var out bytes.Buffer
			if err := writeJSON(&out, FrameHello, hello); err != nil {
				t.Fatal(err)
			}
			if err := writeJSON(&out, FrameIdentity, IdentityRequest{Hostname: "c3"}); err != nil {
				t.Fatal(err)
			}
			if _, err := host.Write(out.Bytes()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := readIdentity(ctx, host)
			if err != nil || len(res.Applied) != 1 || res.Applied[0] != "hostname:c3" {
				t.Fatalf("identity: %+v, %v", res, err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("ServeConn: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ServeConn did not return")
			}
			cc.mu.Lock()
			defer cc.mu.Unlock()
			if cc.writes != tc.wantWrites {
				t.Fatalf("the agent answered in %d writes, want %d", cc.writes, tc.wantWrites)
			}
		})
	}
}
