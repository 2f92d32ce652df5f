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
	pending  bool   // the previous byte was escapeByte
	buf      []byte // raw input
	carry    []byte // filtered input not yet returned
	err      error  // the error of the read that produced carry
}

func (c *consoleInput) Read(p []byte) (int, error) {
	if len(c.carry) == 0 {
		if cap(c.buf) < len(p) {
			c.buf = make([]byte, len(p))
		}
		n, err := c.r.Read(c.buf[:len(p)])
		c.filter(c.buf[:n])
		if len(c.carry) == 0 {
			return 0, err
		}
		c.err = err
	}
	n := copy(p, c.carry)
	c.carry = c.carry[n:]
	if len(c.carry) == 0 && c.err != nil {
		err := c.err
		c.err = nil
		return n, err
	}
	return n, nil
}

// filter appends in to carry without the escape sequence (calling onEscape
// for it); a Ctrl-A not followed by x is passed through, and Ctrl-A Ctrl-A
// sends one Ctrl-A.
func (c *consoleInput) filter(in []byte) {
	for _, b := range in {
		switch {
		case c.pending && (b == 'x' || b == 'X'):
			c.pending = false
			if c.onEscape != nil {
				c.onEscape()
			}
		case c.pending && b == escapeByte:
			c.pending = false
			c.carry = append(c.carry, b)
		case c.pending:
			c.pending = false
			c.carry = append(c.carry, escapeByte, b)
		case b == escapeByte:
			c.pending = true
		default:
			c.carry = append(c.carry, b)
		}
	}
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
