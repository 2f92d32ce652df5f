package vmm

import (
	"time"
)

// inputRetry is how long console input waits when the UART's receive FIFO
// is full before offering the rest again.
const (
	inputRetry       = 2 * time.Millisecond
	inputStopTimeout = time.Second
)

// consoleInput feeds Config.ConsoleIn to the serial port.
type consoleInput struct {
	done    chan struct{} // closed to stop
	exited  chan struct{} // closed when the goroutine returns
	unblock func()        // interrupts a blocked Read, when the reader allows it
}

type deadliner interface{ SetReadDeadline(time.Time) error }

func (m *Machine) startConsoleInput() *consoleInput {
	c := &consoleInput{done: make(chan struct{}), exited: make(chan struct{})}
	r := m.cfg.ConsoleIn
	if r == nil {
		close(c.exited)
		return c
	}
	if d, ok := r.(deadliner); ok {
		c.unblock = func() { _ = d.SetReadDeadline(time.Now()) }
	}
	go func() {
		defer close(c.exited)
		buf := make([]byte, 512)
		for {
			n, err := r.Read(buf)
			for p := buf[:n]; len(p) > 0; {
				p = p[m.serial.Input(p):]
				if len(p) == 0 {
					break
				}
				select {
				case <-c.done:
					return
				case <-time.After(inputRetry):
				}
			}
			if err != nil {
				return
			}
			select {
			case <-c.done:
				return
			default:
			}
		}
	}()
	return c
}

// stop ends the input goroutine: at once if its reader takes deadlines,
// otherwise when its pending Read returns (waiting at most
// inputStopTimeout here).
func (c *consoleInput) stop() {
	close(c.done)
	if c.unblock != nil {
		c.unblock()
	}
	select {
	case <-c.exited:
	case <-time.After(inputStopTimeout):
	}
}
