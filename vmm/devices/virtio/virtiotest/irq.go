package virtiotest

import (
	"sync"
	"time"
)

// MSI is one message the transport sent.
type MSI struct {
	Addr uint64
	Data uint32
}

// FakeInterrupt implements virtio.Interrupt and records every message and
// level, waking waiters.
type FakeInterrupt struct {
	mu   sync.Mutex
	msis []MSI
	intx bool
	ints int // INTx rising edges
	ch   chan struct{}
}

// NewFakeInterrupt returns an empty recorder.
func NewFakeInterrupt() *FakeInterrupt { return &FakeInterrupt{ch: make(chan struct{}, 1)} }

func (f *FakeInterrupt) wake() {
	select {
	case f.ch <- struct{}{}:
	default:
	}
}

// SignalMSI records a message.
func (f *FakeInterrupt) SignalMSI(addr uint64, data uint32) error {
	f.mu.Lock()
	f.msis = append(f.msis, MSI{addr, data})
	f.mu.Unlock()
	f.wake()
	return nil
}

// SetINTx records a level.
func (f *FakeInterrupt) SetINTx(high bool) error {
	f.mu.Lock()
	if high && !f.intx {
		f.ints++
	}
	f.intx = high
	f.mu.Unlock()
	f.wake()
	return nil
}

// MSIs returns the messages so far.
func (f *FakeInterrupt) MSIs() []MSI {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]MSI(nil), f.msis...)
}

// INTx returns the line level and the number of rising edges.
func (f *FakeInterrupt) INTx() (high bool, rises int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.intx, f.ints
}

// Wait blocks until something is recorded or d passes.
func (f *FakeInterrupt) Wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ch:
		return true
	case <-t.C:
		return false
	}
}
