package net

import "fmt"

// State is the device's saved state. Frames in flight are not part of it: a
// network loses frames, and the guest's TCP resends them. The queues are
// saved by the transport.
type State struct {
	MAC    [6]byte
	LinkUp bool
}

// Save returns the device's state; pause the transport first so no chain
// is half done.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{MAC: d.mac, LinkUp: d.linkUp}
}

// Restore loads st; call it before the transport's Restore. A clone that
// needs its own identity calls SetMAC afterwards.
func (d *Device) Restore(st State) error {
	if st.MAC[0]&1 != 0 || st.MAC == ([6]byte{}) {
		return fmt.Errorf("%w: MAC %x is not a unicast address", ErrBadState, st.MAC)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mac, d.linkUp = st.MAC, st.LinkUp
	return nil
}
