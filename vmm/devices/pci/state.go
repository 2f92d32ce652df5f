package pci

import "fmt"

// State is the bus's saved state: the conf1 address register and the
// configuration space of every function, host bridge included. Device
// internals (queues, MSI-X tables) are the device's own State.
type State struct {
	Address   uint32
	Functions []FunctionState
}

// FunctionState is one function's configuration space at a slot.
type FunctionState struct {
	Slot   int
	Config ConfigState
}

// Save returns the bus's state, functions in slot order.
func (h *Host) Save() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := State{Address: h.addr}
	for _, f := range h.slots {
		if f != nil {
			st.Functions = append(st.Functions, FunctionState{Slot: f.slot, Config: f.cfg.Save()})
		}
	}
	return st
}

// Restore loads st into a bus that has the same devices at the same slots
// (the machine re-creates them before restoring) and re-registers BAR ranges
// to match. It checks everything before changing anything.
func (h *Host) Restore(st State) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[int]bool, len(st.Functions))
	for _, fs := range st.Functions {
		if fs.Slot < 0 || fs.Slot >= NumSlots || h.slots[fs.Slot] == nil {
			return fmt.Errorf("%w: saved function at slot %d has no device here", ErrBadState, fs.Slot)
		}
		if seen[fs.Slot] {
			return fmt.Errorf("%w: slot %d saved twice", ErrBadState, fs.Slot)
		}
		seen[fs.Slot] = true
		if err := h.slots[fs.Slot].cfg.check(&fs.Config); err != nil {
			return fmt.Errorf("pci: slot %d: %w", fs.Slot, err)
		}
	}
	for s, f := range h.slots {
		if f != nil && !seen[s] {
			return fmt.Errorf("%w: device at slot %d has no saved state", ErrBadState, s)
		}
	}
	for _, fs := range st.Functions {
		if err := h.slots[fs.Slot].cfg.Restore(fs.Config); err != nil {
			return fmt.Errorf("pci: slot %d: %w", fs.Slot, err) // checked above; cannot happen
		}
	}
	h.addr = st.Address & addrKeep
	for _, f := range h.slots {
		if f != nil {
			h.remap(f)
		}
	}
	return nil
}
