package i8042

import "fmt"

// State is the controller's saved state.
type State struct {
	CommandByte    uint8
	OutputPort     uint8
	PendingCommand uint8 // command waiting for its data byte, 0 for none
	LastWasCommand bool
	Queue          []Answer
}

// Save returns a copy of the controller's state.
func (c *Controller) Save() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{
		CommandByte: c.ctr, OutputPort: c.outPort, PendingCommand: c.pending, LastWasCommand: c.lastCmd,
		Queue: append([]Answer(nil), c.queue...),
	}
}

// Restore replaces the controller's state; an impossible State is refused.
func (c *Controller) Restore(st State) error {
	if len(st.Queue) > maxQueue {
		return fmt.Errorf("%w: %d queued bytes exceed %d", ErrBadState, len(st.Queue), maxQueue)
	}
	switch st.PendingCommand {
	case 0, cmdWriteCTR, cmdWriteOutPort, cmdWriteKbdOut, cmdWriteAuxOut, cmdWriteAux:
	default:
		return fmt.Errorf("%w: pending command %#x takes no data byte", ErrBadState, st.PendingCommand)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ctr, c.outPort, c.pending, c.lastCmd = st.CommandByte, st.OutputPort, st.PendingCommand, st.LastWasCommand
	c.queue = append([]Answer(nil), st.Queue...)
	c.updateIRQs(true)
	return nil
}
