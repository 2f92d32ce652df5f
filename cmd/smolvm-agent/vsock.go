package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Go's net package does not know AF_VSOCK, so the agent wraps raw
// non-blocking sockets in *os.File (which puts them in the runtime poller:
// Read, Write, Close and deadlines work as for any net.Conn).

// vsockAddr is a vsock address (context id and port).
type vsockAddr struct{ cid, port uint32 }

func (a vsockAddr) Network() string { return "vsock" }
func (a vsockAddr) String() string {
	return strconv.FormatUint(uint64(a.cid), 10) + ":" + strconv.FormatUint(uint64(a.port), 10)
}

// vsockConn is a connected vsock stream.
type vsockConn struct {
	*os.File
	local, remote vsockAddr
}

func (c *vsockConn) LocalAddr() net.Addr  { return c.local }
func (c *vsockConn) RemoteAddr() net.Addr { return c.remote }

// vsockListener accepts vsock streams.
type vsockListener struct {
	f    *os.File
	addr vsockAddr
}

func listenVsock(port uint32) (*vsockListener, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w (is the vsock transport module loaded?)", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock bind port %d: %w", port, err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("vsock listen port %d: %w", port, err)
	}
	return &vsockListener{f: os.NewFile(uintptr(fd), "vsock-listener"), addr: vsockAddr{unix.VMADDR_CID_ANY, port}}, nil
}

// Accept waits for the next connection. Running out of file descriptors or
// memory is waited out (100 ms pauses), as a server must not die of it.
func (l *vsockListener) Accept() (net.Conn, error) {
	for {
		c, err := l.accept()
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		return c, err
	}
}

func (l *vsockListener) accept() (net.Conn, error) {
	rc, err := l.f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var sa unix.Sockaddr
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, aerr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			// The Go runtime's own signals (preemption) interrupt
			// accept, and a client may give up before we take it:
			// neither is the listener's failure.
			if aerr != unix.EINTR && aerr != unix.ECONNABORTED {
				return aerr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, net.ErrClosed
		}
		return nil, err
	}
	if aerr != nil {
		return nil, fmt.Errorf("vsock accept: %w", aerr)
	}
	c := &vsockConn{File: os.NewFile(uintptr(nfd), "vsock"), local: l.addr}
	if vm, ok := sa.(*unix.SockaddrVM); ok {
		c.remote = vsockAddr{vm.CID, vm.Port}
	}
	return c, nil
}

func (l *vsockListener) Close() error   { return l.f.Close() }
func (l *vsockListener) Addr() net.Addr { return l.addr }

// dialVsock connects to cid:port, waiting at most 5 s.
func dialVsock(cid, port uint32) (net.Conn, error) {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vsock")
	err = unix.Connect(fd, &unix.SockaddrVM{CID: cid, Port: port})
	if err == unix.EINPROGRESS || err == unix.EINTR { // EINTR: it goes on in the background
		err = waitConnected(f, 5*time.Second)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vsock connect %d:%d: %w", cid, port, err)
	}
	return &vsockConn{File: f, remote: vsockAddr{cid, port}}, nil
}

// waitConnected waits for a non-blocking connect to finish.
func waitConnected(f *os.File, timeout time.Duration) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	_ = f.SetWriteDeadline(time.Now().Add(timeout))
	defer f.SetWriteDeadline(time.Time{})
	var soErr error
	first := true
	werr := rc.Write(func(fd uintptr) bool {
		if first { // called once before any wait: the connect is pending
			first = false
			return false
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			soErr = err
		case v == int(unix.EINPROGRESS) || v == int(unix.EALREADY) || v == int(unix.EINTR):
			return false
		case v != 0:
			soErr = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err == unix.ENOTCONN {
				return false
			}
		}
		return true
	})
	if werr != nil {
		return werr
	}
	return soErr
}
