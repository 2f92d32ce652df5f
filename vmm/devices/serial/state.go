package serial

import "fmt"

// State is the UART's saved state: its registers and the bytes the guest has
// not read yet. Output not yet written is not included (Flush before Save).
type State struct {
	IER, FCR, LCR, MCR, LSR, MSR, SCR uint8
	DLL, DLM                          uint8
	THRPending                        bool   // THRE interrupt latched
	RX                                []byte // receive FIFO, oldest first
}

// Save returns a copy of the UART's state.
func (s *Serial) Save() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{
		IER: s.ier, FCR: s.fcr, LCR: s.lcr, MCR: s.mcr, LSR: s.lsr, MSR: s.msr, SCR: s.scr,
		DLL: s.dll, DLM: s.dlm,
		THRPending: s.thrPending,
		RX:         append([]byte(nil), s.rx...),
	}
}

// Restore replaces the UART's state with st and drives the interrupt line to
// match it. A State this UART cannot hold is refused and nothing changes.
func (s *Serial) Restore(st State) error {
	switch {
	case st.IER&^ierMask != 0:
		return fmt.Errorf("%w: IER %#x has bits above %#x", ErrBadState, st.IER, ierMask)
	case st.MCR&^mcrMask != 0:
		return fmt.Errorf("%w: MCR %#x has bits above %#x", ErrBadState, st.MCR, mcrMask)
	case st.FCR&^(fcrEnable|fcrTrigger) != 0:
		return fmt.Errorf("%w: FIFO control %#x has bits outside %#x", ErrBadState, st.FCR, fcrEnable|fcrTrigger)
	case len(st.RX) > s.rxCap:
		return fmt.Errorf("%w: %d received bytes exceed the %d-byte FIFO", ErrBadState, len(st.RX), s.rxCap)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ier, s.fcr, s.lcr, s.mcr, s.lsr, s.msr, s.scr = st.IER, st.FCR, st.LCR, st.MCR, st.LSR, st.MSR, st.SCR
	s.dll, s.dlm = st.DLL, st.DLM
	s.thrPending = st.THRPending
	s.rx = append([]byte(nil), st.RX...)
	s.setLevel(s.pendingID() != iirNone, true)
	return nil
}
