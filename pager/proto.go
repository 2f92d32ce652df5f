package pager

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// ProtocolVersion is the version a client and a daemon agree on in hello
// (docs/PAGER.md describes every message).
const ProtocolVersion = 1

// maxMessage bounds one message's JSON payload.
const maxMessage = 16 << 20

// Message types.
const (
	msgHello        = "hello"
	msgRegister     = "register"
	msgReady        = "ready"
	msgStats        = "stats"
	msgWaitPrefetch = "wait_prefetch"
	msgClose        = "close"
	msgOK           = "ok"
	msgError        = "error"
	msgFaultError   = "fault_error"
)

// Region maps guest memory in the VMM's address space to an artifact of the
// bundle: the Length bytes at HostAddr hold the artifact's bytes from
// Offset. HostAddr, Length and Offset are page aligned.
type Region struct {
	HostAddr uint64 `json:"host_addr"`
	Length   uint64 `json:"length"`
	Artifact string `json:"artifact"`
	Offset   int64  `json:"offset"`
}

// message is the envelope of every message, both ways; Type says which
// fields are set.
type message struct {
	Type    string `json:"type"`
	ID      uint64 `json:"id,omitempty"`
	Version int    `json:"version,omitempty"`

	// register
	Regions  []Region    `json:"regions,omitempty"`
	Record   bool        `json:"record,omitempty"`
	Prefetch *WorkingSet `json:"prefetch,omitempty"`

	// wait_prefetch: the longest wait, in milliseconds.
	WaitMs int64 `json:"wait_ms,omitempty"`

	// replies
	WorkingSet *WorkingSet `json:"working_set,omitempty"`
	Stats      *Stats      `json:"stats,omitempty"`
	Error      string      `json:"error,omitempty"`
	Fault      *FaultError `json:"fault,omitempty"`
}

// encodeMessage frames m: a 4-byte big-endian payload length, then JSON.
func encodeMessage(m *message) ([]byte, error) {
	payload, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("pager: encode %s message: %w", m.Type, err)
	}
	if len(payload) > maxMessage {
		return nil, fmt.Errorf("%w: %s message of %d bytes exceeds %d", ErrProtocol, m.Type, len(payload), maxMessage)
	}
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b, nil
}

// decodeMessage parses one payload.
func decodeMessage(payload []byte) (*message, error) {
	var m message
	if err := json.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: bad JSON: %v", ErrProtocol, err)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("%w: message without a type", ErrProtocol)
	}
	return &m, nil
}

// writeMessage sends m, with fd attached by SCM_RIGHTS when fd >= 0.
func writeMessage(c *net.UnixConn, m *message, fd int) error {
	b, err := encodeMessage(m)
	if err != nil {
		return err
	}
	if fd < 0 {
		_, err = c.Write(b)
	} else {
		var n int
		n, _, err = c.WriteMsgUnix(b, unix.UnixRights(fd), nil)
		if err == nil && n < len(b) {
			_, err = c.Write(b[n:])
		}
	}
	if err != nil {
		return fmt.Errorf("pager: send %s: %w", m.Type, err)
	}
	return nil
}

// msgConn is the part of *net.UnixConn the reader needs (a fake in fuzz tests).
type msgConn interface {
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
}

// reader reads framed messages and collects the fds that come with them.
type reader struct {
	c   msgConn
	fds []int // received, not yet claimed
	oob []byte
}

func newReader(c msgConn) *reader { return &reader{c: c, oob: make([]byte, unix.CmsgSpace(4*8))} }

// read returns the next message; fds received while reading it are
// appended to r.fds. io.EOF means the peer closed between messages.
func (r *reader) read() (*message, error) {
	var hdr [4]byte
	if err := r.full(hdr[:], true); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMessage {
		return nil, fmt.Errorf("%w: message length %d exceeds %d", ErrProtocol, n, maxMessage)
	}
	payload := make([]byte, n)
	if err := r.full(payload, false); err != nil {
		return nil, err
	}
	m, err := decodeMessage(payload)
	if err != nil {
		return nil, &payloadError{err}
	}
	return m, nil
}

// payloadError is a bad payload inside a well-framed message: the stream is
// still in step.
type payloadError struct{ err error }

func (e *payloadError) Error() string { return e.err.Error() }
func (e *payloadError) Unwrap() error { return e.err }

func (r *reader) full(b []byte, atStart bool) error {
	got := 0
	for got < len(b) {
		n, oobn, flags, _, err := r.c.ReadMsgUnix(b[got:], r.oob)
		if oobn > 0 {
			r.collect(r.oob[:oobn])
		}
		if flags&unix.MSG_CTRUNC != 0 {
			return fmt.Errorf("%w: control message truncated (too many fds)", ErrProtocol)
		}
		got += n
		if err != nil {
			eof := errors.Is(err, io.EOF)
			if eof && got == 0 && atStart {
				return io.EOF
			}
			if eof {
				return fmt.Errorf("%w: connection closed inside a message (%d of %d bytes)", ErrProtocol, got, len(b))
			}
			return err
		}
		if n == 0 {
			if got == 0 && atStart {
				return io.EOF
			}
			return fmt.Errorf("%w: connection closed inside a message", ErrProtocol)
		}
	}
	return nil
}

func (r *reader) collect(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			r.fds = append(r.fds, fds...)
		}
	}
}

// takeFD claims the oldest received fd, or -1.
func (r *reader) takeFD() int {
	if len(r.fds) == 0 {
		return -1
	}
	fd := r.fds[0]
	r.fds = r.fds[1:]
	return fd
}

// closeFDs closes every unclaimed fd.
func (r *reader) closeFDs() {
	for _, fd := range r.fds {
		unix.Close(fd)
	}
	r.fds = nil
}
