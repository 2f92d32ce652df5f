package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Version is the protocol version this package speaks. Both sides send it
// in their Hello; a peer with another version is refused (ErrVersion).
const Version = 1

// FrameType says what a frame's payload is.
type FrameType uint8

// Frame types (docs/AGENT.md). Their numbers never change; a new version
// may add types.
const (
	FrameHello   FrameType = 1  // both ways, first frame: JSON Hello
	FrameError   FrameType = 2  // either way: JSON ErrorMsg, then the sender closes
	FrameExec    FrameType = 3  // host -> agent: JSON ExecRequest
	FrameStarted FrameType = 4  // agent -> host: JSON Started
	FrameStdin   FrameType = 5  // host -> agent: raw bytes; empty = end of input
	FrameSignal  FrameType = 6  // host -> agent: JSON SignalRequest
	FrameStdout  FrameType = 7  // agent -> host: raw bytes
	FrameStderr  FrameType = 8  // agent -> host: raw bytes
	FrameExit    FrameType = 9  // agent -> host: JSON ExitStatus, last frame of a session
	FrameReady   FrameType = 10 // agent -> host (ready port): JSON Ready
	// FrameIdentity and FrameIdentityDone: a session that, instead of an
	// exec, gives a restored clone its own identity (identity.go).
	FrameIdentity     FrameType = 11 // host -> agent: JSON IdentityRequest
	FrameIdentityDone FrameType = 12 // agent -> host: JSON IdentityResult, last frame
)

var frameNames = map[FrameType]string{
	FrameHello: "hello", FrameError: "error", FrameExec: "exec", FrameStarted: "started",
	FrameStdin: "stdin", FrameSignal: "signal", FrameStdout: "stdout", FrameStderr: "stderr",
	FrameExit: "exit", FrameReady: "ready", FrameIdentity: "identity", FrameIdentityDone: "identity-done",
}

func (t FrameType) String() string {
	if n, ok := frameNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// HeaderSize is the size of a frame header: type (1 byte), then the payload
// length (4 bytes, big-endian).
const HeaderSize = 5

// MaxPayload bounds a frame's payload; a longer length is malformed.
const MaxPayload = 1 << 20

// chunkSize is how much stdin/stdout/stderr data one frame carries.
const chunkSize = 32 << 10

// Frame is one decoded frame.
type Frame struct {
	Type    FrameType
	Payload []byte
}

// Sentinel errors, for errors.Is.
var (
	// ErrMalformed: the peer sent bytes that are not a valid frame or
	// message (bad type, oversized length, bad JSON, frame out of order).
	ErrMalformed = errors.New("agent: malformed frame")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("agent: protocol version mismatch")
	// ErrRemote: the peer reported an error (an ErrorMsg frame).
	ErrRemote = errors.New("agent: remote error")
	// ErrNotListening: the hybrid vsock socket answered CONNECT with no
	// "OK": nothing listens on that port in the guest (yet).
	ErrNotListening = errors.New("agent: nothing listening on the guest port")
)

// ReadFrame reads one frame. A clean EOF before the header is io.EOF; a
// frame cut short is io.ErrUnexpectedEOF; a bad header is ErrMalformed.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	t := FrameType(h[0])
	n := binary.BigEndian.Uint32(h[1:])
	if _, ok := frameNames[t]; !ok {
		return Frame{}, fmt.Errorf("%w: unknown frame type %d (length %d)", ErrMalformed, h[0], n)
	}
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: %v frame of %d bytes exceeds the %d byte limit", ErrMalformed, t, n, MaxPayload)
	}
	f := Frame{Type: t, Payload: make([]byte, n)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("agent: %v frame payload (%d bytes): %w", t, n, err)
	}
	return f, nil
}

// WriteFrame writes one frame in a single Write call (so that concurrent
// writers serialised by a mutex never interleave).
func WriteFrame(w io.Writer, t FrameType, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("agent: %v frame of %d bytes exceeds the %d byte limit", t, len(payload), MaxPayload)
	}
	buf := make([]byte, HeaderSize+len(payload))
	buf[0] = byte(t)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(payload)))
	copy(buf[HeaderSize:], payload)
	_, err := w.Write(buf)
	return err
}

// writeJSON writes a frame whose payload is v as JSON.
func writeJSON(w io.Writer, t FrameType, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent: encode %v: %w", t, err)
	}
	return WriteFrame(w, t, b)
}

// decode parses a JSON payload into v, naming the frame on error.
func (f Frame) decode(v any) error {
	if err := json.Unmarshal(f.Payload, v); err != nil {
		return fmt.Errorf("%w: %v payload: %v", ErrMalformed, f.Type, err)
	}
	return nil
}

// expect reads a frame of type t into v (JSON). An Error frame from the
// peer becomes an error wrapping ErrRemote.
func expect(r io.Reader, t FrameType, v any) error {
	f, err := ReadFrame(r)
	if err != nil {
		return err
	}
	return f.expect(t, v)
}

// expect checks that f is of type t and decodes it into v.
func (f Frame) expect(t FrameType, v any) error {
	if f.Type == FrameError && t != FrameError {
		return f.remoteError()
	}
	if f.Type != t {
		return fmt.Errorf("%w: got a %v frame, want %v", ErrMalformed, f.Type, t)
	}
	return f.decode(v)
}

// remoteError turns an Error frame into an error.
func (f Frame) remoteError() error {
	var m ErrorMsg
	if err := f.decode(&m); err != nil {
		return err
	}
	err := &RemoteError{Code: m.Code, Message: m.Message}
	if m.Code == CodeVersion {
		return fmt.Errorf("%w: %w", ErrVersion, err)
	}
	return err
}
