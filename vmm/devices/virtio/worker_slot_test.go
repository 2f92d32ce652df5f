package virtio

import (
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// TestWorkerSlot: an empty slot ignores everything; Start runs a first
// pass at once, Kick another, none while paused, one on Resume, none after
// Stop; a second Start stops the first worker.
func TestWorkerSlot(t *testing.T) {
	var s WorkerSlot
	s.Kick()
	s.Pause()
	s.Resume()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop of an empty slot: %v", err)
	}

	var passes atomic.Int32
	run := func() (bool, error) { passes.Add(1); return false, nil }
	fail := func(err error) { t.Errorf("fail(%v)", err) }
	s.Start(run, fail)
	t.Cleanup(func() { s.Stop() })
	waitFor(t, "first pass", func() bool { return passes.Load() == 1 })
	s.Kick()
	waitFor(t, "pass on Kick", func() bool { return passes.Load() == 2 })

	s.Pause()
	s.Kick()
	time.Sleep(50 * time.Millisecond)
	if n := passes.Load(); n != 2 {
		t.Fatalf("%d passes while paused, want still 2", n)
	}
	s.Resume()
	waitFor(t, "pass on Resume", func() bool { return passes.Load() >= 3 })

	var second atomic.Int32
	first := s.get()
	s.Start(func() (bool, error) { second.Add(1); return false, nil }, fail)
	select {
	case <-first.done:
	default:
		t.Fatal("the first worker still runs after a second Start")
	}
	waitFor(t, "second worker's first pass", func() bool { return second.Load() == 1 })

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	before := passes.Load() + second.Load()
	s.Kick()
	time.Sleep(50 * time.Millisecond)
	if after := passes.Load() + second.Load(); after != before {
		t.Fatalf("%d passes after Stop", after-before)
	}
}
