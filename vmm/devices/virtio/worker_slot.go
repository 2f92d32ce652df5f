package virtio

import "sync"

// WorkerSlot holds a single-queue device's worker from Activate to Reset,
// for the QueueNotify, Pause and Resume that arrive from other goroutines
// meanwhile. Each is a no-op on an empty slot (a device not activated, or
// reset). The zero value is an empty slot.
type WorkerSlot struct {
	mu sync.Mutex
	w  *Worker
}

// Start puts a new worker running run (see StartWorker) in the slot, after
// stopping one already there, and asks it for a first pass: a restored
// queue may hold chains the driver made available before the snapshot.
func (s *WorkerSlot) Start(run func() (bool, error), fail func(error)) {
	old := s.swap(StartWorker(run, fail))
	if old != nil {
		_ = old.Stop()
	}
	s.Kick()
}

// Stop empties the slot and stops its worker; see Worker.Stop.
func (s *WorkerSlot) Stop() error {
	if w := s.swap(nil); w != nil {
		return w.Stop()
	}
	return nil
}

// Kick asks the worker for a pass.
func (s *WorkerSlot) Kick() {
	if w := s.get(); w != nil {
		w.Kick()
	}
}

// Pause waits for the worker's pass in progress and holds off the rest.
func (s *WorkerSlot) Pause() {
	if w := s.get(); w != nil {
		w.Pause()
	}
}

// Resume undoes Pause.
func (s *WorkerSlot) Resume() {
	if w := s.get(); w != nil {
		w.Resume()
	}
}

func (s *WorkerSlot) get() *Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w
}

func (s *WorkerSlot) swap(w *Worker) *Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.w
	s.w = w
	return old
}
