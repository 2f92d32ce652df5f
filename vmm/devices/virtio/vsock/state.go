package vsock

import (
	"fmt"
	"time"
)

// State is the device's saved state. Connections are not part of it: a
// unix socket on the host cannot follow a snapshot, so a restored device
// starts with none and tells the guest so (TRANSPORT_RESET).
type State struct {
	GuestCID uint64
	// ResetPending: a TRANSPORT_RESET event had not yet been delivered.
	ResetPending bool
}

// Save returns the device's state.
func (d *Device) Save() State {
	d.smu.Lock()
	defer d.smu.Unlock()
	return State{GuestCID: d.cid, ResetPending: d.resetEvent}
}

// Restore loads st before the transport's Restore re-activates the device:
// every connection is dropped and a VIRTIO_VSOCK_EVENT_TRANSPORT_RESET is
// queued for the guest, which then resets its own sockets (listening ones
// stay) and re-reads its CID. Connections host clients ask for wait until
// the guest has done so (Mux.HoldRequests), and get ports the snapshot's
// host side did not use (Mux.NewPortEpoch).
func (d *Device) Restore(st State) error {
	if st.GuestCID != d.cid {
		return fmt.Errorf("%w: saved guest CID %d, this device has CID %d", ErrState, st.GuestCID, d.cid)
	}
	d.mux.Reset()
	d.mux.NewPortEpoch()
	d.smu.Lock()
	d.resetEvent = true
	d.holdSince = time.Now()
	d.smu.Unlock()
	// Host clients' connections wait until the guest has acted on the
	// reset (Mux.HoldRequests; released by the worker's pass).
	d.mux.HoldRequests()
	d.mu.Lock()
	w := d.worker
	d.mu.Unlock()
	if w != nil {
		w.Kick()
	}
	return nil
}
