package rng

import (
	"crypto/rand"
	"fmt"
	"io"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// Limits.
const (
	QueueSize = 64
	// MaxRequest caps the bytes given for one buffer chain; Linux asks for
	// at most a page or so at a time.
	MaxRequest = 64 << 10
)

// Device is a virtio-rng device; it implements virtio.Device and
// virtio.Pauser.
type Device struct {
	src io.Reader

	w   virtio.WorkerSlot
	buf []byte

	mu sync.Mutex
	n  uint64 // bytes given
}

// New returns a device reading from src (crypto/rand.Reader if nil).
func New(src io.Reader) *Device {
	if src == nil {
		src = rand.Reader
	}
	return &Device{src: src, buf: make([]byte, MaxRequest)}
}

// Type is virtio.TypeRNG.
func (d *Device) Type() uint16 { return virtio.TypeRNG }

// Features: none of its own.
func (d *Device) Features() uint64 { return 0 }

// QueueSizes is one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig: the device has no configuration.
func (d *Device) ReadConfig(_ uint64, data []byte) { clear(data) }

// WriteConfig ignores writes.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts the worker.
func (d *Device) Activate(a *virtio.Activation) error {
	q := a.Queues[0]
	if q == nil {
		return fmt.Errorf("%w: rng request queue not enabled", virtio.ErrBadQueue)
	}
	d.w.Start(func() (bool, error) { return d.pass(a.Mem, q) }, a.Fail)
	return nil
}

func (d *Device) pass(mem virtio.Memory, q *virtio.Queue) (bool, error) {
	for range q.Size() {
		c, err := q.Pop()
		if err != nil {
			return false, err
		}
		if c == nil {
			return false, q.Notify()
		}
		n := min(c.WriteLen, MaxRequest)
		if _, err := io.ReadFull(d.src, d.buf[:n]); err != nil {
			return false, fmt.Errorf("rng: host randomness: %w", err)
		}
		if _, err := c.Writer(mem).Write(d.buf[:n]); err != nil {
			return false, fmt.Errorf("rng: head %d: %w", c.Head, err)
		}
		if err := q.Push(c.Head, uint32(n)); err != nil {
			return false, err
		}
		d.mu.Lock()
		d.n += n
		d.mu.Unlock()
	}
	return true, q.Notify()
}

// QueueNotify kicks the worker.
func (d *Device) QueueNotify(int) { d.w.Kick() }

// Reset stops the worker.
func (d *Device) Reset() { _ = d.w.Stop() }

// Pause holds off requests.
func (d *Device) Pause() { d.w.Pause() }

// Resume undoes Pause.
func (d *Device) Resume() { d.w.Resume() }

// Given is the number of random bytes handed to the guest.
func (d *Device) Given() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// State is the device's saved state; it has nothing to carry but a version
// so the snapshot format can grow.
type State struct {
	Version uint32
}

// Save returns the state.
func (d *Device) Save() State { return State{Version: 1} }

// Restore accepts a state from this version.
func (d *Device) Restore(st State) error {
	if st.Version != 1 {
		return fmt.Errorf("%w: rng state version %d", virtio.ErrBadState, st.Version)
	}
	return nil
}
