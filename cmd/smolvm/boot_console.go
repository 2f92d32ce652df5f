package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// escapeByte then 'x' typed on the console stops the VM (as in QEMU).
const escapeByte = 0x01 // Ctrl-A

// consoleInput is boot's stdin for the guest's serial port: a non-blocking
// (pollable) duplicate of fd 0, so that the VMM can interrupt a pending Read
// with a deadline, which watches for the Ctrl-A x escape.
type consoleInput struct {
	r        io.Reader // f, or a fake in tests
	f        *os.File
	onEscape func()
	pending  bool // the previous byte was escapeByte
}

func (c *consoleInput) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.onEscape != nil {
		out := p[:0]
		for _, b := range p[:n] {
			switch {
			case c.pending && (b == 'x' || b == 'X'):
				c.onEscape()
				c.pending = false
				continue
			case c.pending && b == escapeByte:
				c.pending = false // Ctrl-A Ctrl-A sends one Ctrl-A
			case c.pending:
				out = append(out, escapeByte)
				c.pending = false
			case b == escapeByte:
				c.pending = true
				continue
			}
			out = append(out, b)
		}
		n = len(out)
	}
	return n, err
}

// SetReadDeadline lets the VMM interrupt a pending Read when it stops.
func (c *consoleInput) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// openConsoleInput duplicates stdin, makes the copy non-blocking and, on a
// terminal, puts it in raw mode. restore undoes both (idempotent): the file
// description is shared with the parent shell, which must get it back as it
// was.
func openConsoleInput() (*consoleInput, func(), error) {
	fd, err := unix.Dup(int(os.Stdin.Fd()))
	if err != nil {
		return nil, nil, fmt.Errorf("console: dup stdin: %w", err)
	}
	unix.CloseOnExec(fd)
	var undo []func()
	if old, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		raw := *old
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err == nil {
			undo = append(undo, func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) })
		}
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK == 0 {
		if err := unix.SetNonblock(fd, true); err == nil {
			undo = append(undo, func() { _ = unix.SetNonblock(fd, false) })
		}
	}
	f := os.NewFile(uintptr(fd), "stdin")
	var once sync.Once
	restore := func() {
		once.Do(func() {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			f.Close()
		})
	}
	return &consoleInput{r: f, f: f}, restore, nil
}
