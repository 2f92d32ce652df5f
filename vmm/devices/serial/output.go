package serial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// CloseTimeout bounds how long Close waits for buffered output to be written.
var CloseTimeout = 2 * time.Second

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("serial: closed")

// outBuffer decouples the vCPU from the output writer: put appends to a
// bounded buffer, one goroutine swaps it out and writes it.
type outBuffer struct {
	w         io.Writer
	max       int
	onDrained func() // called (without mu held) when a full buffer was emptied

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	writing  bool
	closed   bool
	progress chan struct{} // closed and replaced after each write
	written  uint64
	errors   uint64
	lastErr  error

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type outStats struct {
	written, errors uint64
	lastErr         error
}

func newOutBuffer(w io.Writer, max int, onDrained func()) *outBuffer {
	o := &outBuffer{
		w: w, max: max, onDrained: onDrained,
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go o.run()
	return o
}

// put appends v unless the buffer is full or closed.
func (o *outBuffer) put(v byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || len(o.buf) >= o.max {
		return false
	}
	o.buf = append(o.buf, v)
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return true
}

func (o *outBuffer) full() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed || len(o.buf) >= o.max
}

func (o *outBuffer) stats() outStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return outStats{o.written, o.errors, o.lastErr}
}

func (o *outBuffer) run() {
	defer close(o.done)
	for {
		select {
		case <-o.wake:
			o.writeOnce()
		case <-o.stop:
			o.writeOnce()
			return
		}
	}
}

// writeOnce writes everything buffered so far.
func (o *outBuffer) writeOnce() {
	o.mu.Lock()
	batch := o.buf
	wasFull := len(batch) >= o.max
	o.buf, o.spare = o.spare[:0], nil
	o.writing = true
	o.mu.Unlock()

	if wasFull && o.onDrained != nil {
		o.onDrained()
	}
	var err error
	if len(batch) > 0 {
		_, err = o.w.Write(batch)
	}

	o.mu.Lock()
	if err != nil {
		o.errors++
		o.lastErr = err
	} else {
		o.written += uint64(len(batch))
	}
	if o.spare == nil {
		o.spare = batch[:0]
	}
	o.writing = false
	close(o.progress)
	o.progress = make(chan struct{})
	o.mu.Unlock()
}

// flush waits until everything put so far has been written.
func (o *outBuffer) flush(ctx context.Context) error {
	for {
		o.mu.Lock()
		if len(o.buf) == 0 && !o.writing {
			o.mu.Unlock()
			return nil
		}
		ch := o.progress
		o.mu.Unlock()
		select {
		case <-ch:
		case <-o.done:
			o.mu.Lock()
			pending := len(o.buf)
			o.mu.Unlock()
			if pending == 0 {
				return nil
			}
			return fmt.Errorf("serial: flush: %d bytes left unwritten: %w", pending, ErrClosed)
		case <-ctx.Done():
			return fmt.Errorf("serial: flush: %w", ctx.Err())
		}
	}
}

func (o *outBuffer) close() error {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		close(o.stop)
	})
	select {
	case <-o.done:
		return nil
	case <-time.After(CloseTimeout):
		return fmt.Errorf("serial: output writer still blocked after %v", CloseTimeout)
	}
}

// Flush waits until all guest output accepted so far has been handed to the
// writer, or ctx ends. Call it before Save: output is not part of State.
func (s *Serial) Flush(ctx context.Context) error {
	if s.out == nil {
		return nil
	}
	return s.out.flush(ctx)
}
