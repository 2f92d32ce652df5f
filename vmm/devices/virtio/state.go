package virtio

import (
	"fmt"
	"time"
)

// State is a transport's saved state: negotiation, status, queue
// configuration and positions (in-flight state included: a queue's
// LastAvail may run ahead of the driver's view of used entries only while a
// device is running, so Save wants it paused), and the MSI-X table and
// pending bits. The PCI configuration space (MSI-X enable, BAR addresses) is
// saved by the pci.Host; the device's own state by the device.
type State struct {
	DeviceType       uint16
	Status           uint8
	DeviceFeatureSel uint32
	DriverFeatureSel uint32
	DriverFeatures   uint64
	QueueSelect      uint16
	ConfigGeneration uint8
	Queues           []QueueState

	ISR         uint8
	MSIXConfig  uint16
	MSIXTable   [][msixEntrySize]byte
	MSIXPending []bool
}

// pauseTimeout bounds Pause (a variable for tests).
var pauseTimeout = StopTimeout

// Pause stops the device's own goroutines (a Pauser) so that Save sees no
// request half done. The vCPUs must be stopped too. A device whose request
// in progress does not finish within StopTimeout (a disk read stuck on a
// wedged FUSE mount) is not paused: Pause returns an error wrapping
// ErrStuck, Save refuses, and Resume undoes the pause whenever it lands.
func (t *Transport) Pause() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.active || t.paused {
		return nil
	}
	p, ok := t.dev.(Pauser)
	if !ok {
		t.paused = true
		return nil
	}
	if t.pausing == nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.Pause()
		}()
		t.pausing = done
	}
	timer := time.NewTimer(pauseTimeout)
	defer timer.Stop()
	select {
	case <-t.pausing:
		t.pausing = nil
		t.paused = true
		return nil
	case <-timer.C:
		return fmt.Errorf("%w: device type %d did not pause within %v (a request in progress)", ErrStuck, t.dev.Type(), pauseTimeout)
	}
}

// Resume undoes Pause, also one that timed out (once it lands).
func (t *Transport) Resume() {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.dev.(Pauser)
	if !ok || !t.active {
		t.paused = false
		return
	}
	if t.pausing != nil {
		go func(done <-chan struct{}) {
			<-done
			p.Resume()
		}(t.pausing)
		t.pausing = nil
		return
	}
	if t.paused {
		p.Resume()
		t.paused = false
	}
}

// Save returns the transport's state. A running device that has goroutines
// (a Pauser) must be paused first (ErrNotPaused).
func (t *Transport) Save() (State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.dev.(Pauser); ok && t.active && !t.paused {
		return State{}, ErrNotPaused
	}
	st := State{
		DeviceType: t.dev.Type(), Status: t.Status(),
		DeviceFeatureSel: t.devFeatureSel, DriverFeatureSel: t.drvFeatureSel, DriverFeatures: t.driverFeatures,
		QueueSelect: t.queueSel, ConfigGeneration: uint8(t.configGen.Load()),
	}
	for _, q := range t.queues {
		st.Queues = append(st.Queues, q.save())
	}
	t.irqMu.Lock()
	st.ISR, st.MSIXConfig = t.isr, t.msixConfig
	st.MSIXTable = append([][msixEntrySize]byte(nil), t.msix.entries...)
	st.MSIXPending = append([]bool(nil), t.msix.pending...)
	t.irqMu.Unlock()
	return st, nil
}

// Restore loads st, checking it first. The device is reset, its own state
// must be restored before this call, and when st has DRIVER_OK (and no
// error bits) it is activated again on the restored queues, paused if the
// transport is paused now. Restore the pci.Host first: INTx and MSI-X
// delivery read the configuration space.
func (t *Transport) Restore(st State) error {
	if st.DeviceType != t.dev.Type() {
		return fmt.Errorf("%w: saved device type %d, this is type %d", ErrBadState, st.DeviceType, t.dev.Type())
	}
	if len(st.Queues) != len(t.queues) {
		return fmt.Errorf("%w: %d saved queues, device has %d", ErrBadState, len(st.Queues), len(t.queues))
	}
	if len(st.MSIXTable) != len(t.msix.entries) || len(st.MSIXPending) != len(t.msix.pending) {
		return fmt.Errorf("%w: %d saved MSI-X entries, device has %d", ErrBadState, len(st.MSIXTable), len(t.msix.entries))
	}
	if st.DriverFeatures&^t.offered != 0 {
		return fmt.Errorf("%w: saved features %#x include ones not offered (%#x)", ErrBadState, st.DriverFeatures, t.offered)
	}
	for i, qs := range st.Queues {
		if qs.Size > t.queues[i].maxSize {
			return fmt.Errorf("%w: queue %d size %d exceeds its maximum %d", ErrBadState, i, qs.Size, t.queues[i].maxSize)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	paused := t.paused
	t.resetLocked()
	for i, qs := range st.Queues {
		if err := t.queues[i].restore(qs); err != nil {
			t.resetLocked()
			return err
		}
	}
	t.devFeatureSel, t.drvFeatureSel, t.driverFeatures = st.DeviceFeatureSel, st.DriverFeatureSel, st.DriverFeatures
	t.queueSel = st.QueueSelect
	t.configGen.Store(uint32(st.ConfigGeneration))
	t.status.Store(uint32(st.Status))
	t.irqMu.Lock()
	t.isr, t.msixConfig = st.ISR, st.MSIXConfig
	copy(t.msix.entries, st.MSIXTable)
	copy(t.msix.pending, st.MSIXPending)
	if t.isr != 0 && !t.msixState().enabled {
		t.setINTxLocked(true)
	}
	t.irqMu.Unlock()
	const running = StatusDriverOK | StatusFeaturesOK
	if st.Status&running == running && st.Status&(StatusDeviceNeedsReset|StatusFailed) == 0 {
		if err := t.activateLocked(); err != nil {
			t.fail(err)
			return fmt.Errorf("virtio: restore: %w", err)
		}
		if paused {
			if p, ok := t.dev.(Pauser); ok {
				p.Pause() // a fresh device: nothing in progress
			}
			t.paused = true
		}
	}
	return nil
}
