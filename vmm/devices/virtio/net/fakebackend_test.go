package net_test

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeBackend is a Backend over channels: frames the test puts in toGuest
// are read by the device; frames the device writes land in fromGuest.
type fakeBackend struct {
	toGuest   chan []byte
	fromGuest chan []byte
	failWrite bool

	once   sync.Once
	closed chan struct{}
}

var errClosed = errors.New("fake backend closed")

func newFakeBackend() *fakeBackend {
	return &fakeBackend{toGuest: make(chan []byte, 512), fromGuest: make(chan []byte, 512), closed: make(chan struct{})}
}

func (b *fakeBackend) ReadFrame(p []byte) (int, error) {
	select {
	case f := <-b.toGuest:
		return copy(p, f), nil
	case <-b.closed:
		return 0, errClosed
	}
}

func (b *fakeBackend) WriteFrame(p []byte) error {
	if b.failWrite {
		return errors.New("fake write failure")
	}
	select {
	case b.fromGuest <- append([]byte(nil), p...):
		return nil
	case <-b.closed:
		return errClosed
	}
}

func (b *fakeBackend) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

func (b *fakeBackend) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// recv waits for a frame the guest sent.
func (b *fakeBackend) recv(t *testing.T) []byte {
	t.Helper()
	select {
	case f := <-b.fromGuest:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame reached the backend")
		return nil
	}
}
