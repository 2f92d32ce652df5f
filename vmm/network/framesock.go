package network

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// socketBuffer is the send and receive buffer of each end of the frame
// socket pair: room for a few hundred full frames each way.
const socketBuffer = 1 << 20

// frameFile is a Backend over a file that reads and writes one frame per
// call: a datagram socket or a tap device, non-blocking in Go's poller so
// that Close wakes a blocked ReadFrame.
type frameFile struct{ f *os.File }

// ReadFrame reads one frame.
func (b *frameFile) ReadFrame(p []byte) (int, error) { return b.f.Read(p) }

// WriteFrame writes one frame.
func (b *frameFile) WriteFrame(p []byte) error {
	n, err := b.f.Write(p)
	if err == nil && n != len(p) {
		err = fmt.Errorf("network: short frame write (%d of %d bytes)", n, len(p))
	}
	return err
}

// Close closes the file (idempotent).
func (b *frameFile) Close() error {
	if err := b.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// Backend carries one Ethernet frame per call (the virtio-net device's
// Backend).
type Backend interface {
	ReadFrame(p []byte) (int, error)
	WriteFrame(p []byte) error
	Close() error
}

// socketPair returns the two ends of a SOCK_DGRAM unix socket pair: one as a
// frame Backend for the device, the other as a file for the virtual
// network's switch (gvisor-tap-vsock's "vfkit" protocol: one bare frame per
// datagram), in this process or passed to the network helper.
func socketPair() (*frameFile, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("network: socketpair: %w", err)
	}
	for _, fd := range fds {
		// Best effort: the defaults only cost speed.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	}
	return &frameFile{os.NewFile(uintptr(fds[0]), "virtio-net frames")}, os.NewFile(uintptr(fds[1]), "switch frames"), nil
}

// FramePair returns a frame socket pair for an in-process virtual network:
// the device's Backend and the switch's end as a net.Conn.
func FramePair() (Backend, net.Conn, error) {
	dev, sw, err := socketPair()
	if err != nil {
		return nil, nil, err
	}
	conn, err := net.FileConn(sw) // dups the descriptor
	sw.Close()
	if err != nil {
		dev.Close()
		return nil, nil, fmt.Errorf("network: socketpair conn: %w", err)
	}
	return dev, conn, nil
}
