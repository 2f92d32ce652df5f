package vmm

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// StopTimeout bounds how long Run waits for the vCPUs to leave KVM_RUN after
// a stop, kicking them again every kickInterval.
const (
	StopTimeout  = 5 * time.Second
	kickInterval = 50 * time.Millisecond
	flushTimeout = 2 * time.Second
)

// Run starts one goroutine per vCPU and returns when the machine stops: nil
// when the guest powered off or rebooted or ctx was canceled (StopReason
// says which), an *ExitError for a triple fault (ErrTripleFault) or a guest
// KVM could not run (ErrGuest), ErrStuck if a vCPU would not stop. A machine
// runs once.
func (m *Machine) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.ran || m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.ran = true
	m.runDone = make(chan struct{})
	defer close(m.runDone)
	m.mu.Unlock()

	m.stop.kick = m.kickAll
	var wg sync.WaitGroup
	for _, v := range m.vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.runVCPU(v)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()
	input := m.startConsoleInput()

	select {
	case <-ctx.Done():
		m.stop.request(StopCanceled, nil)
	case <-m.stop.done:
	}

	timeout := time.NewTimer(StopTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(kickInterval)
	defer tick.Stop()
	var stuck error
wait:
	for {
		select {
		case <-allDone:
			break wait
		case <-tick.C:
			m.kickAll()
		case <-timeout.C:
			stuck = fmt.Errorf("%w within %v", ErrStuck, StopTimeout)
			break wait
		}
	}
	input.stop()
	fctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	_ = m.serial.Flush(fctx)
	cancel()
	if stuck != nil {
		return stuck
	}
	_, err := m.stop.result()
	return err
}

// StopReason says why Run returned (StopNone while it runs).
func (m *Machine) StopReason() StopReason {
	if !m.stop.stopped() {
		return StopNone
	}
	r, _ := m.stop.result()
	return r
}

// Stop asks a running machine to stop as if its context were canceled.
func (m *Machine) Stop() { m.stop.request(StopCanceled, nil) }

// stopRun stops a Run still in progress and waits for it to return, so that
// Close never frees vCPUs, devices or memory under running vCPU threads. The
// wait is bounded: Run itself gives up on stuck vCPUs after StopTimeout.
func (m *Machine) stopRun() error {
	m.mu.Lock()
	done := m.runDone
	m.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	m.Stop()
	t := time.NewTimer(StopTimeout + flushTimeout + time.Second)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("vmm: close: %w: Run did not return; resources left allocated", ErrStuck)
	}
}
