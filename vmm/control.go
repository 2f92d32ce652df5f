package vmm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/smolvm/smolvm/vmm/kvm"
)

// Pause, Resume and Paused serve the control plane (vmm/control): a paused
// machine's vCPUs wait outside KVM_RUN, so guest time stands still for
// device models and a later snapshot can read consistent vCPU state.

// ErrNotRunning: the machine is not running (not started, or stopped), so
// it cannot be paused.
var ErrNotRunning = errors.New("vmm: machine not running")

// pauseGate holds vCPUs outside KVM_RUN while the machine is paused.
type pauseGate struct {
	mu     sync.Mutex
	resume chan struct{} // non-nil while paused; closed by Resume
	parked int           // vCPUs waiting in park
	change chan struct{} // closed and replaced whenever parked changes
}

// park is called by each vCPU goroutine before it enters the guest: while
// the machine is paused it waits for Resume or a stop.
func (g *pauseGate) park(v *kvm.VCPU, stop <-chan struct{}) {
	g.mu.Lock()
	ch := g.resume
	if ch == nil {
		g.mu.Unlock()
		return
	}
	g.parked++
	g.notifyLocked()
	g.mu.Unlock()
	resumed := false
	select {
	case <-ch:
		resumed = true
	case <-stop:
	}
	g.mu.Lock()
	g.parked--
	g.notifyLocked()
	g.mu.Unlock()
	if resumed {
		// Pause's kick left immediate_exit set: clear it so the guest
		// runs. (On a stop it stays set: the vCPU must not run again.)
		v.SetImmediateExit(false)
	}
}

func (g *pauseGate) notifyLocked() {
	if g.change != nil {
		close(g.change)
	}
	g.change = make(chan struct{})
}

// Pause stops every vCPU outside KVM_RUN and returns once all of them wait
// (or ctx ends, or the machine stops). Pausing a paused machine is a no-op.
// Only a running machine (inside Run) can be paused.
func (m *Machine) Pause(ctx context.Context) error {
	if !m.running() {
		return fmt.Errorf("vmm: pause: %w", ErrNotRunning)
	}
	g := &m.pause
	g.mu.Lock()
	if g.resume == nil {
		g.resume = make(chan struct{})
	}
	g.mu.Unlock()
	tick := time.NewTicker(kickInterval)
	defer tick.Stop()
	for {
		g.mu.Lock()
		done := g.parked == len(m.vcpus)
		if g.change == nil {
			g.change = make(chan struct{})
		}
		change := g.change
		g.mu.Unlock()
		if done {
			// No device request half done while paused.
			if err := m.pauseVirtio(); err != nil {
				m.Resume()
				return err
			}
			return nil
		}
		m.kickAll()
		select {
		case <-change:
		case <-tick.C:
		case <-m.stop.done:
			return fmt.Errorf("vmm: pause: %w", ErrNotRunning)
		case <-ctx.Done():
			m.Resume()
			return fmt.Errorf("vmm: pause: %w", ctx.Err())
		}
	}
}

// Resume lets paused vCPUs run again; resuming a running machine is a
// no-op.
func (m *Machine) Resume() {
	m.resumeVirtio()
	g := &m.pause
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resume != nil {
		close(g.resume)
		g.resume = nil
	}
}

// Paused reports whether the machine is paused (or being paused).
func (m *Machine) Paused() bool {
	m.pause.mu.Lock()
	defer m.pause.mu.Unlock()
	return m.pause.resume != nil
}

// running reports whether Run has started and the machine has not
// stopped.
func (m *Machine) running() bool {
	m.mu.Lock()
	ran := m.ran
	m.mu.Unlock()
	return ran && !m.stop.stopped()
}
