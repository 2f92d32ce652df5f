package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// stdinQueue is how many Stdin frames may wait for a command that is slow
// to read its input before the session stops reading frames (and with
// them signals) from the host.
const stdinQueue = 64

// runSession starts req, streams its output and input and sends its exit
// status.
func (s *Server) runSession(c net.Conn, w io.Writer, req ExecRequest) error {
	if len(req.Args) == 0 || req.Args[0] == "" {
		err := errors.New("empty command")
		_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeStart, Message: err.Error()})
		return err
	}
	if req.Dir != "" {
		if fi, err := os.Stat(req.Dir); err != nil || !fi.IsDir() {
			if err == nil {
				err = fmt.Errorf("%s: not a directory", req.Dir)
			}
			err = fmt.Errorf("working directory: %w", err)
			_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeStart, Message: err.Error()})
			return err
		}
	}
	cmd := exec.Command(req.Args[0], req.Args[1:]...)
	cmd.Env = append(os.Environ(), req.Env...)
	cmd.Dir = req.Dir
	// Output waits for the Started frame, which is written after Start.
	started := make(chan struct{})
	defer func() {
		select {
		case <-started:
		default:
			close(started)
		}
	}()
	cmd.Stdout = streamWriter{w, FrameStdout, started}
	cmd.Stderr = streamWriter{w, FrameStderr, started}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = s.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	var stdin io.WriteCloser
	if req.Stdin {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeStart, Message: err.Error()})
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		_ = writeJSON(w, FrameError, ErrorMsg{Code: CodeStart, Message: err.Error()})
		return fmt.Errorf("agent: start %q: %w", req.Args[0], err)
	}
	pid := cmd.Process.Pid
	err := writeJSON(w, FrameStarted, Started{PID: pid})
	close(started)
	if err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return err
	}

	// The command's end is signalled by exited; the host's frames are read
	// on this goroutine's helper until then.
	exited := make(chan struct{})
	readDone := make(chan error, 1)
	go func() { readDone <- s.readInput(c, pid, stdin, exited) }()

	waitErr := cmd.Wait()
	close(exited)
	status, err := exitStatus(cmd, waitErr)
	if err != nil {
		s.logf("smolvm-agent: %q (pid %d): %v", req.Args[0], pid, err)
	}
	sendErr := writeJSON(w, FrameExit, status)
	// The host closes after the exit frame; a host that does not is cut
	// off by our own close (the caller closes c), which ends readInput.
	c.Close()
	if rerr := <-readDone; rerr != nil && sendErr == nil {
		return rerr
	}
	return sendErr
}

// readInput reads Stdin and Signal frames until the command exits or the
// host goes away (then it kills the command's process group).
func (s *Server) readInput(c net.Conn, pid int, stdin io.WriteCloser, exited <-chan struct{}) error {
	var queue chan []byte
	var writerDone chan struct{}
	if stdin != nil {
		queue = make(chan []byte, stdinQueue)
		writerDone = make(chan struct{})
		go func(queue <-chan []byte) {
			defer close(writerDone)
			defer stdin.Close()
			for b := range queue {
				if _, err := stdin.Write(b); err != nil {
					// The command closed its input: drop the rest.
					for range queue {
					}
					return
				}
			}
		}(queue)
		defer func() {
			if queue != nil {
				close(queue)
			}
			<-writerDone
		}()
	}
	for {
		f, err := ReadFrame(c)
		if err != nil {
			select {
			case <-exited:
				return nil
			default:
			}
			// The host is gone (or sent garbage): the command must not
			// outlive its session.
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("agent: session of pid %d: %w", pid, err)
		}
		switch f.Type {
		case FrameStdin:
			if queue == nil {
				continue // stdin was not requested, or already closed
			}
			if len(f.Payload) == 0 {
				close(queue)
				queue = nil
				continue
			}
			select {
			case queue <- f.Payload:
			case <-exited:
			}
		case FrameSignal:
			var sr SignalRequest
			if err := f.decode(&sr); err != nil {
				return err
			}
			if sr.Signal <= 0 || sr.Signal > 64 {
				s.logf("smolvm-agent: pid %d: ignoring signal %d", pid, sr.Signal)
				continue
			}
			select {
			case <-exited:
			default:
				_ = syscall.Kill(-pid, syscall.Signal(sr.Signal))
			}
		default:
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			return fmt.Errorf("%w: unexpected %v frame during a session", ErrMalformed, f.Type)
		}
	}
}

// exitStatus converts Wait's result; err is a failure other than a
// non-zero exit (such as output that could not be delivered).
func exitStatus(cmd *exec.Cmd, waitErr error) (ExitStatus, error) {
	ps := cmd.ProcessState
	if ps == nil {
		return ExitStatus{Code: 255}, waitErr
	}
	var st ExitStatus
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st = ExitStatus{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	} else {
		st = ExitStatus{Code: ps.ExitCode()}
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return st, waitErr
	}
	return st, nil
}
