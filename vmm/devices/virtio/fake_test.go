package virtio_test

import (
	"io"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// echoDev is a test device with two queues: each chain on queue 0 gets its
// readable bytes copied into its writable ones; queue 1 is never used. Its
// device configuration is 8 bytes it echoes back on read.
type echoDev struct {
	mu        sync.Mutex
	cfg       [8]byte
	a         *virtio.Activation
	w         *virtio.Worker
	resets    int
	activated int
}

func (e *echoDev) Type() uint16         { return 0x7f }
func (e *echoDev) Features() uint64     { return 1 << 0 }
func (e *echoDev) QueueSizes() []uint16 { return []uint16{16, 8} }

func (e *echoDev) ReadConfig(off uint64, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range data {
		if o := off + uint64(i); o < uint64(len(e.cfg)) {
			data[i] = e.cfg[o]
		}
	}
}

func (e *echoDev) WriteConfig(off uint64, data []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, b := range data {
		if o := off + uint64(i); o < uint64(len(e.cfg)) {
			e.cfg[o] = b
		}
	}
}

func (e *echoDev) Activate(a *virtio.Activation) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.a = a
	e.activated++
	e.w = virtio.StartWorker(func() (bool, error) { return e.pass(a) }, a.Fail)
	e.w.Kick()
	return nil
}

func (e *echoDev) pass(a *virtio.Activation) (bool, error) {
	q := a.Queues[0]
	if q == nil {
		return false, nil
	}
	for range q.Size() {
		c, err := q.Pop()
		if err != nil {
			return false, err
		}
		if c == nil {
			return false, q.Notify()
		}
		w := c.Writer(a.Mem)
		if _, err := io.Copy(w, c.Reader(a.Mem)); err != nil && err != io.ErrShortWrite {
			return false, err
		}
		if err := q.Push(c.Head, uint32(w.Written())); err != nil {
			return false, err
		}
	}
	return true, q.Notify()
}

func (e *echoDev) QueueNotify(q int) {
	e.mu.Lock()
	w := e.w
	e.mu.Unlock()
	if w != nil && q == 0 {
		w.Kick()
	}
}

func (e *echoDev) Reset() {
	e.mu.Lock()
	w := e.w
	e.w, e.a = nil, nil
	e.resets++
	e.mu.Unlock()
	if w != nil {
		w.Stop()
	}
}

func (e *echoDev) Pause() {
	e.mu.Lock()
	w := e.w
	e.mu.Unlock()
	if w != nil {
		w.Pause()
	}
}

func (e *echoDev) Resume() {
	e.mu.Lock()
	w := e.w
	e.mu.Unlock()
	if w != nil {
		w.Resume()
	}
}

func (e *echoDev) counts() (activated, resets int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.activated, e.resets
}
