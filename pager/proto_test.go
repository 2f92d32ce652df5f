package pager

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// rawConn speaks the framing by hand, to send what a well-behaved client
// never would.
type rawConn struct {
	t  *testing.T
	c  *net.UnixConn
	rd *reader
}

func dialRaw(t *testing.T, sock string) *rawConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, rd: newReader(c)}
}

func (r *rawConn) sendBytes(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) send(m *message, fd int) {
	r.t.Helper()
	if err := writeMessage(r.c, m, fd); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawConn) recv() *message {
	r.t.Helper()
	m, err := r.rd.read()
	if err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	return m
}

func frameBytes(payload string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	return append(b, payload...)
}

func TestProtocolRejectsBadMessages(t *testing.T) {
	cfg := testImageConfig(64)
	sock := testServer(t, &Server{Open: openOnly(fakeimage.New(cfg))})
	hello := &message{Type: msgHello, Version: ProtocolVersion}
	region := func(addr, length uint64, artifact string, off int64) []Region {
		return []Region{{HostAddr: addr, Length: length, Artifact: artifact, Offset: off}}
	}
	pipeFD := func(t *testing.T) int {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
		return p[0]
	}
	tests := []struct {
		name     string
		noHello  bool
		raw      string // sent as a framed payload when set
		msg      *message
		fd       func(t *testing.T) int
		wantErr  string
		wantOpen bool // the connection still answers a stats request
	}{
		{name: "not JSON", raw: "{nope", wantErr: "bad JSON", wantOpen: true},
		{name: "no type", raw: `{"id":3}`, wantErr: "without a type", wantOpen: true},
		{name: "before hello", noHello: true, msg: &message{Type: msgStats}, wantErr: "first message must be hello"},
		{name: "wrong version", noHello: true, msg: &message{Type: msgHello, Version: 99}, wantErr: "version 99 not supported"},
		{name: "unknown type", msg: &message{Type: "reboot"}, wantErr: `unknown message type "reboot"`, wantOpen: true},
		{name: "register without fd", msg: &message{Type: msgRegister, Regions: region(0x10000, 4096, "memory", 0)}, wantErr: "no userfaultfd attached", wantOpen: true},
		{name: "register with a pipe", msg: &message{Type: msgRegister, Regions: region(0x10000, 4096, "memory", 0)}, fd: pipeFD, wantErr: "not a usable userfaultfd", wantOpen: true},
		{name: "no regions", msg: &message{Type: msgRegister}, fd: pipeFD, wantErr: "no regions", wantOpen: true},
		{name: "unaligned region", msg: &message{Type: msgRegister, Regions: region(0x10001, 4096, "memory", 0)}, fd: pipeFD, wantErr: "not page aligned", wantOpen: true},
		{name: "unknown artifact", msg: &message{Type: msgRegister, Regions: region(0x10000, 4096, "disk/x", 0)}, fd: pipeFD, wantErr: `artifact "disk/x"`, wantOpen: true},
		{name: "region past the image", msg: &message{Type: msgRegister, Regions: region(0x10000, 65*4096, "memory", 0)}, fd: pipeFD, wantErr: "extend past", wantOpen: true},
		{name: "overlapping regions", msg: &message{Type: msgRegister, Regions: []Region{
			{HostAddr: 0x10000, Length: 8192, Artifact: "memory"}, {HostAddr: 0x11000, Length: 4096, Artifact: "memory"}}}, fd: pipeFD, wantErr: "overlaps", wantOpen: true},
		{name: "wait_prefetch without a VM", msg: &message{Type: msgWaitPrefetch, WaitMs: 10}, wantErr: "no VM registered", wantOpen: true},
		{name: "bad prefetch list", msg: &message{Type: msgRegister, Regions: region(0x10000, 4096, "memory", 0),
			Prefetch: &WorkingSet{Version: 7}}, fd: pipeFD, wantErr: "prefetch list", wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := dialRaw(t, sock)
			if !tt.noHello {
				rc.send(hello, -1)
				if r := rc.recv(); r.Type != msgHello || r.Version != ProtocolVersion {
					t.Fatalf("hello reply %+v", r)
				}
			}
			if tt.raw != "" {
				rc.sendBytes(frameBytes(tt.raw))
			} else {
				fd := -1
				if tt.fd != nil {
					fd = tt.fd(t)
				}
				rc.send(tt.msg, fd)
			}
			r := rc.recv()
			if r.Type != msgError || !strings.Contains(r.Error, tt.wantErr) {
				t.Fatalf("reply %+v, want an error mentioning %q", r, tt.wantErr)
			}
			werr := writeMessage(rc.c, &message{Type: msgStats, ID: 9}, -1)
			m, err := rc.rd.read()
			if werr != nil {
				err = werr
			}
			if tt.wantOpen {
				if err != nil || m.ID != 9 || m.Stats == nil {
					t.Fatalf("connection unusable after the error: %+v, %v", m, err)
				}
			} else if err == nil && m.Type != msgError {
				t.Fatalf("after %s the daemon answered %+v", tt.name, m)
			}
		})
	}
}

func TestProtocolOversizedMessageCloses(t *testing.T) {
	sock := testServer(t, &Server{Open: openOnly(fakeimage.New(testImageConfig(8)))})
	rc := dialRaw(t, sock)
	rc.sendBytes(binary.BigEndian.AppendUint32(nil, maxMessage+1))
	r := rc.recv()
	if r.Type != msgError || !strings.Contains(r.Error, "exceeds") {
		t.Fatalf("reply %+v", r)
	}
	if _, err := rc.rd.read(); err != io.EOF {
		t.Fatalf("connection still open after an oversized message: %v", err)
	}
}

// The client surfaces a daemon that goes away as ErrDaemonGone, promptly.
func TestClientDaemonGone(t *testing.T) {
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Open: openOnly(fakeimage.New(testImageConfig(8)))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, a) }()
	c, err := NewClient(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st, err := c.Stats(context.Background()); err != nil || st.Faults != 0 {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	if err := c.Register(context.Background(), -1, nil, RegisterOptions{}); !errors.Is(err, ErrRejected) {
		t.Fatalf("Register with nothing: %v, want ErrRejected", err)
	}
	ws, err := c.Ready(context.Background())
	if err != nil || len(ws.Ranges) != 0 {
		t.Fatalf("Ready = %+v, %v", ws, err)
	}
	cancel() // the daemon goes away
	select {
	case err := <-c.Err():
		if !errors.Is(err, ErrDaemonGone) {
			t.Fatalf("Err() = %v, want ErrDaemonGone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error 5s after the daemon went away")
	}
	if _, err := c.Stats(context.Background()); err == nil {
		t.Fatal("Stats succeeded on a dead daemon")
	}
	<-done
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	conv := func(fd int) (*net.UnixConn, error) {
		f := osNewFile(fd)
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			return nil, err
		}
		return c.(*net.UnixConn), nil
	}
	a, err := conv(fds[0])
	if err != nil {
		return nil, nil, err
	}
	b, err := conv(fds[1])
	return a, b, err
}

// bytesConn feeds a reader from a byte slice (fuzzing).
type bytesConn struct{ r *bytes.Reader }

func (b *bytesConn) ReadMsgUnix(p, oob []byte) (int, int, int, *net.UnixAddr, error) {
	n, err := b.r.Read(p)
	return n, 0, 0, nil, err
}

func FuzzReadMessage(f *testing.F) {
	good, _ := encodeMessage(&message{Type: msgRegister, ID: 1, Regions: []Region{{HostAddr: 4096, Length: 4096, Artifact: "memory"}}})
	f.Add(good)
	f.Add(frameBytes(`{"type":"hello","version":1}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := newReader(&bytesConn{bytes.NewReader(b)})
		for i := 0; i < 100; i++ {
			m, err := rd.read()
			if err != nil {
				var pe *payloadError
				if errors.As(err, &pe) {
					continue
				}
				return
			}
			if m.Type == "" {
				t.Fatal("accepted a message without a type")
			}
		}
	})
}

func osNewFile(fd int) *os.File { return os.NewFile(uintptr(fd), "socketpair") }

// An fd sent with anything but register is closed, never used by a later
// register.
func TestProtocolStrayFD(t *testing.T) {
	sock := testServer(t, &Server{Open: openOnly(fakeimage.New(testImageConfig(8)))})
	rc := dialRaw(t, sock)
	rc.send(&message{Type: msgHello, Version: ProtocolVersion}, -1)
	rc.recv()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	rc.send(&message{Type: msgStats, ID: 1}, p[0])
	if r := rc.recv(); r.Stats == nil {
		t.Fatalf("stats reply %+v", r)
	}
	rc.send(&message{Type: msgRegister, ID: 2, Regions: []Region{{HostAddr: 0x10000, Length: 4096, Artifact: "memory"}}}, -1)
	if r := rc.recv(); r.Type != msgError || !strings.Contains(r.Error, "no userfaultfd attached") {
		t.Fatalf("register after a stray fd: %+v", r)
	}
}
