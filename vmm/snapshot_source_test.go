package vmm

import (
	"errors"
	"testing"
	"time"
)

// Close waits for a memory hold; a closed machine refuses one.
func TestHoldMemoryDelaysClose(t *testing.T) {
	m := &Machine{}
	release, err := m.HoldMemory()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case <-closed:
		t.Fatal("Close returned while memory was held")
	case <-time.After(100 * time.Millisecond):
	}
	release()
	release() // idempotent
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after release")
	}
	if _, err := m.HoldMemory(); !errors.Is(err, ErrClosed) {
		t.Fatalf("hold on a closed machine: %v, want ErrClosed", err)
	}
}
