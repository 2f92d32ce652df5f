package virtio

import (
	"fmt"
	"sync"
	"time"
)

// StopTimeout bounds how long Worker.Stop waits for a pass to end.
const StopTimeout = 10 * time.Second

// Worker is the goroutine most devices do their queue work on. Kick (from
// QueueNotify, on the vCPU thread) asks for a pass and never blocks; kicks
// that arrive during a pass coalesce into one more pass. A pass is run(): it
// should drain a bounded amount of work and return true to be run again at
// once (more work left). An error from run goes to fail and ends all passes
// until the worker is replaced (a device error needs a reset).
type Worker struct {
	run  func() (more bool, err error)
	fail func(error)
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	passMu sync.Mutex // held during a pass
	paused bool       // under passMu
	failed bool       // under passMu
}

// StartWorker starts a worker goroutine. The owner must call Stop.
func StartWorker(run func() (bool, error), fail func(error)) *Worker {
	w := &Worker{run: run, fail: fail, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

func (w *Worker) loop() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		w.passMu.Lock()
		if !w.paused && !w.failed {
			more, err := w.run()
			if err != nil {
				w.failed = true
				w.fail(err)
			} else if more {
				w.Kick()
			}
		}
		w.passMu.Unlock()
	}
}

// Kick asks for a pass.
func (w *Worker) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Pause waits for the current pass to end and holds off new ones.
func (w *Worker) Pause() {
	w.passMu.Lock()
	w.paused = true
	w.passMu.Unlock()
}

// Resume allows passes again and runs one.
func (w *Worker) Resume() {
	w.passMu.Lock()
	w.paused = false
	w.passMu.Unlock()
	w.Kick()
}

// Stop ends the goroutine, waiting up to StopTimeout for a pass in progress
// (a pass stuck in I/O past that is reported with ErrStuck and left behind).
func (w *Worker) Stop() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	t := time.NewTimer(StopTimeout)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w within %v", ErrStuck, StopTimeout)
	}
}
