package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Command is what the host asks the agent to run.
type Command struct {
	Args []string // command and arguments (required)
	Env  []string // "K=V" added to the agent's environment
	Dir  string   // working directory in the guest
	// Stdin, if not nil, is copied to the command (then end of input is
	// sent); nil gives the command /dev/null. Wait does not wait for a
	// Read on Stdin that never returns.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output (nil discards).
	Stdout, Stderr io.Writer
}

// Session is a command running in the guest.
type Session struct {
	conn  net.Conn
	w     *lockedWriter
	pid   int
	agent string

	done   chan struct{} // closed when the exit frame (or an error) arrived
	status ExitStatus
	err    error
	stop   func() bool
	once   sync.Once
}

// Start performs the handshake on conn, asks the agent to run cmd and waits
// for it to start. The session owns conn from then on: Wait closes it.
// Canceling ctx closes conn, which makes the agent kill the command.
func Start(ctx context.Context, conn net.Conn, cmd Command) (*Session, error) {
	if len(cmd.Args) == 0 {
		conn.Close()
		return nil, errors.New("agent: no command given")
	}
	fail := func(err error) (*Session, error) {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent: exec %q: %w", cmd.Args[0], ctx.Err())
		}
		return nil, fmt.Errorf("agent: exec %q: %w", cmd.Args[0], err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	}
	hello, err := handshake(conn)
	if err != nil {
		stop()
		return fail(err)
	}
	w := &lockedWriter{w: conn}
	req := ExecRequest{Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir, Stdin: cmd.Stdin != nil}
	if err := writeJSON(w, FrameExec, req); err != nil {
		stop()
		return fail(err)
	}
	var st Started
	if err := expect(conn, FrameStarted, &st); err != nil {
		stop()
		return fail(err)
	}
	_ = conn.SetDeadline(time.Time{})
	s := &Session{conn: conn, w: w, pid: st.PID, agent: hello.Agent, done: make(chan struct{}), stop: stop}
	go s.read(cmd.Stdout, cmd.Stderr)
	if cmd.Stdin != nil {
		go s.copyStdin(cmd.Stdin)
	}
	return s, nil
}

// handshake sends our Hello and checks the agent's.
// hostHello is the host's hello.
var hostHello = Hello{Version: Version, Agent: "smolvm"}

func handshake(conn net.Conn) (Hello, error) {
	if err := writeJSON(conn, FrameHello, hostHello); err != nil {
		return Hello{}, fmt.Errorf("handshake: %w", err)
	}
	return readHello(conn)
}

// readHello reads the agent's answer to our hello and checks its version.
func readHello(conn net.Conn) (Hello, error) {
	var h Hello
	if err := expect(conn, FrameHello, &h); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w (the agent closed the connection)", io.ErrUnexpectedEOF)
		}
		return h, fmt.Errorf("handshake: %w", err)
	}
	if err := checkVersion(h, "the guest agent"); err != nil {
		return h, err
	}
	return h, nil
}

// PID is the command's process id in the guest.
func (s *Session) PID() int { return s.pid }

// Signal sends sig to the command's process group.
func (s *Session) Signal(sig syscall.Signal) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	if err := writeJSON(s.w, FrameSignal, SignalRequest{Signal: int(sig)}); err != nil {
		return fmt.Errorf("agent: signal pid %d: %w", s.pid, err)
	}
	return nil
}

// Wait waits for the command to exit and returns its status; the error is
// non-nil when the session broke before an exit status arrived.
func (s *Session) Wait() (ExitStatus, error) {
	<-s.done
	s.close()
	return s.status, s.err
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) close() {
	s.once.Do(func() {
		s.stop()
		s.conn.Close()
	})
}

func (s *Session) read(stdout, stderr io.Writer) {
	defer close(s.done)
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		f, err := ReadFrame(s.conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = fmt.Errorf("%w: the agent closed the connection before the exit status (guest gone?)", io.ErrUnexpectedEOF)
			}
			s.err = fmt.Errorf("agent: pid %d: %w", s.pid, err)
			return
		}
		switch f.Type {
		case FrameStdout, FrameStderr:
			out := stdout
			if f.Type == FrameStderr {
				out = stderr
			}
			if _, err := out.Write(f.Payload); err != nil {
				s.err = fmt.Errorf("agent: pid %d: writing %v: %w", s.pid, f.Type, err)
				return
			}
		case FrameExit:
			if err := f.decode(&s.status); err != nil {
				s.err = err
			}
			return
		case FrameError:
			s.err = fmt.Errorf("agent: pid %d: %w", s.pid, f.remoteError())
			return
		default:
			s.err = fmt.Errorf("%w: unexpected %v frame from the agent", ErrMalformed, f.Type)
			return
		}
	}
}

func (s *Session) copyStdin(r io.Reader) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := WriteFrame(s.w, FrameStdin, buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = WriteFrame(s.w, FrameStdin, nil)
			return
		}
		select {
		case <-s.done:
			return
		default:
		}
	}
}

// Run starts cmd on conn and waits for it.
func Run(ctx context.Context, conn net.Conn, cmd Command) (ExitStatus, error) {
	s, err := Start(ctx, conn, cmd)
	if err != nil {
		return ExitStatus{}, err
	}
	st, err := s.Wait()
	if err != nil && ctx.Err() != nil {
		return st, fmt.Errorf("agent: exec %q: %w", cmd.Args[0], ctx.Err())
	}
	return st, err
}
