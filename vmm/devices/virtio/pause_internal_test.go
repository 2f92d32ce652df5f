package virtio

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// stuckDev is a device whose Pause blocks until release is closed, like a
// worker stuck in a disk read on a wedged mount.
type stuckDev struct {
	release chan struct{}
	mu      sync.Mutex
	paused  bool
	resumed int
}

func (d *stuckDev) Type() uint16               { return 0x7e }
func (d *stuckDev) Features() uint64           { return 0 }
func (d *stuckDev) QueueSizes() []uint16       { return []uint16{8} }
func (d *stuckDev) ReadConfig(uint64, []byte)  {}
func (d *stuckDev) WriteConfig(uint64, []byte) {}
func (d *stuckDev) Activate(*Activation) error { return nil }
func (d *stuckDev) QueueNotify(int)            {}
func (d *stuckDev) Reset()                     {}
func (d *stuckDev) Pause()                     { <-d.release; d.mu.Lock(); d.paused = true; d.mu.Unlock() }
func (d *stuckDev) Resume()                    { d.mu.Lock(); d.paused = false; d.resumed++; d.mu.Unlock() }
func (d *stuckDev) state() (paused bool, res int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused, d.resumed
}

type nopIRQ struct{}

func (nopIRQ) SignalMSI(uint64, uint32) error { return nil }
func (nopIRQ) SetINTx(bool) error             { return nil }

func TestPauseIsBounded(t *testing.T) {
	old := pauseTimeout
	pauseTimeout = 50 * time.Millisecond
	t.Cleanup(func() { pauseTimeout = old })

	dev := &stuckDev{release: make(chan struct{})}
	tr, err := NewTransport(TransportConfig{Device: dev, Mem: &SliceMemory{Mem: make([]byte, 4096)}, IRQ: nopIRQ{}})
	if err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	tr.active = true // as after DRIVER_OK
	tr.mu.Unlock()

	start := time.Now()
	if err := tr.Pause(); !errors.Is(err, ErrStuck) {
		t.Fatalf("Pause of a stuck device: %v, want ErrStuck", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Pause took %v", d)
	}
	if _, err := tr.Save(); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("Save after a failed pause: %v", err)
	}
	tr.Resume() // the pause has not landed: undone when it does
	close(dev.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if paused, res := dev.state(); !paused && res == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late pause was not undone")
		}
		time.Sleep(time.Millisecond)
	}
	// A pause that lands in time works as usual.
	if err := tr.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Save(); err != nil {
		t.Fatal(err)
	}
	tr.Resume()
	if paused, res := dev.state(); paused || res != 2 {
		t.Fatalf("after resume: paused %v, resumed %d times", paused, res)
	}
}
