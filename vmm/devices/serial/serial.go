package serial

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// Defaults for Config fields left zero.
const (
	DefaultOutBuffer = 64 << 10
	DefaultRXBuffer  = 4 << 10
)

// ErrBadState is returned (wrapped) by Restore for a State this UART cannot
// hold.
var ErrBadState = errors.New("serial: invalid state")

// Config describes one UART.
type Config struct {
	Base uint16          // first of NumPorts ports (COM1: 0x3F8)
	IRQ  devices.IRQLine // the UART's interrupt (COM1: GSI 4); nil for none
	Out  io.Writer       // guest output; nil discards it
	// OutBuffer bounds output not yet written to Out (DefaultOutBuffer if 0).
	OutBuffer int
	// RXBuffer bounds input not yet read by the guest (DefaultRXBuffer if 0).
	RXBuffer int
}

// Stats counts what the UART had to drop or could not do.
type Stats struct {
	OutBytes     uint64 // bytes handed to Out
	OutDropped   uint64 // guest bytes dropped because the output buffer was full
	InDropped    uint64 // host bytes Input refused (FIFO full or loopback); lost unless the caller retries them
	WriteErrors  uint64 // Out.Write calls that failed (their bytes are dropped)
	IRQErrors    uint64 // IRQLine.SetLevel calls that failed
	LastWriteErr error
	LastIRQErr   error
}

// Serial is a 16550A UART. It is a devices.PortDevice.
type Serial struct {
	base  uint16
	irq   devices.IRQLine
	rxCap int

	mu sync.Mutex
	// Registers.
	ier, lcr, mcr, lsr, msr, scr, fcr uint8
	dll, dlm                          uint8
	thrPending                        bool // THRE interrupt latched
	rx                                []byte
	level                             bool // last level given to irq
	stats                             Stats

	out *outBuffer // nil when Out is nil
}

// New returns a UART in its reset state. If cfg.Out is not nil it starts the
// goroutine that writes output; Close stops it.
func New(cfg Config) (*Serial, error) {
	if uint32(cfg.Base)+NumPorts > 1<<16 {
		return nil, fmt.Errorf("serial: base port %#x leaves no room for %d registers", cfg.Base, NumPorts)
	}
	if cfg.OutBuffer < 0 || cfg.RXBuffer < 0 {
		return nil, fmt.Errorf("serial: negative buffer size (out %d, rx %d)", cfg.OutBuffer, cfg.RXBuffer)
	}
	s := &Serial{base: cfg.Base, irq: cfg.IRQ, rxCap: cfg.RXBuffer}
	if s.rxCap == 0 {
		s.rxCap = DefaultRXBuffer
	}
	s.reset()
	if cfg.Out != nil {
		n := cfg.OutBuffer
		if n == 0 {
			n = DefaultOutBuffer
		}
		s.out = newOutBuffer(cfg.Out, n, s.outDrained)
	}
	return s, nil
}

func (s *Serial) reset() {
	s.ier, s.lcr, s.mcr, s.scr, s.fcr = 0, 0, 0, 0, 0
	s.dll, s.dlm = 0x0c, 0 // 9600 baud
	s.lsr = lsrTHRE | lsrTEMT
	s.msr = msrConnected
	s.thrPending = false
	s.rx = nil
}

// Register claims the UART's ports on b.
func (s *Serial) Register(b *devices.Bus) error {
	if err := b.RegisterPort(s.base, NumPorts, s); err != nil {
		return fmt.Errorf("serial at %#x: %w", s.base, err)
	}
	return nil
}

// Close stops the output goroutine after writing what is buffered. It waits
// at most CloseTimeout; if Out is stuck in Write it returns an error and the
// goroutine exits when that Write returns.
func (s *Serial) Close() error {
	if s.out == nil {
		return nil
	}
	return s.out.close()
}

// Stats returns the drop and error counters.
func (s *Serial) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	if s.out != nil {
		o := s.out.stats()
		st.OutBytes, st.WriteErrors, st.LastWriteErr = o.written, o.errors, o.lastErr
	}
	return st
}

// Input queues host bytes for the guest to read and raises the RX interrupt.
// It returns how many bytes (a prefix of p) were queued; the rest did not
// fit in the receive FIFO and are counted in Stats.InDropped; a caller may
// offer them again later. While the UART is in loopback mode its receiver is
// disconnected from the line and nothing is queued.
func (s *Serial) Input(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if s.mcr&mcrLoop == 0 {
		n = max(0, min(len(p), s.rxCap-len(s.rx)))
		s.rx = append(s.rx, p[:n]...)
	}
	s.stats.InDropped += uint64(len(p) - n)
	s.updateIRQ()
	return n
}

// PortIn reads registers; a multi-byte access reads consecutive registers.
func (s *Serial) PortIn(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range data {
		data[i] = s.read(int(port) - int(s.base) + i)
	}
	s.updateIRQ()
}

// PortOut writes registers; a multi-byte access writes consecutive registers.
func (s *Serial) PortOut(port uint16, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range data {
		s.write(int(port)-int(s.base)+i, v)
	}
	s.updateIRQ()
}

func (s *Serial) dlab() bool { return s.lcr&lcrDLAB != 0 }

func (s *Serial) read(off int) uint8 {
	switch off {
	case regData:
		if s.dlab() {
			return s.dll
		}
		if len(s.rx) == 0 {
			return 0
		}
		v := s.rx[0]
		s.rx = s.rx[1:]
		if len(s.rx) == 0 {
			s.rx = nil
		}
		return v
	case regIER:
		if s.dlab() {
			return s.dlm
		}
		return s.ier
	case regIIR:
		id := s.pendingID()
		if id == iirTHRE {
			s.thrPending = false // reading IIR acknowledges THRE
		}
		if s.fcr&fcrEnable != 0 {
			id |= iirFIFOBits
		}
		return id
	case regLCR:
		return s.lcr
	case regMCR:
		return s.mcr
	case regLSR:
		v := s.lineStatus()
		s.lsr &^= lsrErrors
		return v
	case regMSR:
		v := s.msr
		s.msr &^= msrDeltas
		return v
	case regSCR:
		return s.scr
	}
	return 0xff
}

func (s *Serial) write(off int, v uint8) {
	switch off {
	case regData:
		if s.dlab() {
			s.dll = v
			return
		}
		s.transmit(v)
	case regIER:
		if s.dlab() {
			s.dlm = v
			return
		}
		old := s.ier
		s.ier = v & ierMask
		// A 16550A raises THRE again when the interrupt is enabled while the
		// holding register is empty (Linux tests for this at startup).
		if old&ierTHRE == 0 && s.ier&ierTHRE != 0 && s.thrEmpty() {
			s.thrPending = true
		}
	case regIIR: // FCR
		if v&fcrClearRX != 0 {
			s.rx = nil
		}
		s.fcr = v & (fcrEnable | fcrTrigger)
	case regLCR:
		s.lcr = v
	case regMCR:
		s.setMCR(v & mcrMask)
	case regSCR:
		s.scr = v
	}
	// LSR and MSR writes are ignored (factory test registers).
}

// transmit handles a write to THR.
func (s *Serial) transmit(v uint8) {
	s.thrPending = false
	switch {
	case s.mcr&mcrLoop != 0:
		if len(s.rx) >= min(loopbackFIFO, s.rxCap) {
			s.lsr |= lsrOE
		} else {
			s.rx = append(s.rx, v)
		}
	case s.out == nil:
	case !s.out.put(v):
		s.stats.OutDropped++
		return // THR stays full; outDrained raises THRE later
	}
	s.thrPending = s.thrEmpty()
}

// thrEmpty reports whether the guest may write THR without losing a byte.
func (s *Serial) thrEmpty() bool {
	return s.mcr&mcrLoop != 0 || s.out == nil || !s.out.full()
}

func (s *Serial) lineStatus() uint8 {
	v := s.lsr &^ (lsrDR | lsrTHRE | lsrTEMT)
	if len(s.rx) > 0 {
		v |= lsrDR
	}
	if s.thrEmpty() {
		v |= lsrTHRE | lsrTEMT
	}
	return v
}

// setMCR stores the modem control register and, in loopback mode, reflects
// its outputs on the modem status inputs, recording deltas.
func (s *Serial) setMCR(v uint8) {
	s.mcr = v
	status := uint8(msrConnected)
	if v&mcrLoop != 0 {
		status = 0
		if v&mcrRTS != 0 {
			status |= msrCTS
		}
		if v&mcrDTR != 0 {
			status |= msrDSR
		}
		if v&mcrOUT1 != 0 {
			status |= msrRI
		}
		if v&mcrOUT2 != 0 {
			status |= msrDCD
		}
	}
	old := s.msr
	deltas := old & msrDeltas
	changed := (old ^ status) & 0xf0
	if changed&msrCTS != 0 {
		deltas |= msrDCTS
	}
	if changed&msrDSR != 0 {
		deltas |= msrDDSR
	}
	if changed&msrDCD != 0 {
		deltas |= msrDDCD
	}
	if old&msrRI != 0 && status&msrRI == 0 {
		deltas |= msrTERI
	}
	s.msr = status | deltas
}

// pendingID returns the IIR identity of the highest-priority enabled
// interrupt, or iirNone.
func (s *Serial) pendingID() uint8 {
	switch {
	case s.ier&ierRLS != 0 && s.lsr&lsrErrors != 0:
		return iirRLS
	case s.ier&ierRDA != 0 && len(s.rx) > 0:
		return iirRDA
	case s.ier&ierTHRE != 0 && s.thrPending:
		return iirTHRE
	case s.ier&ierMS != 0 && s.msr&msrDeltas != 0:
		return iirMS
	}
	return iirNone
}

// updateIRQ drives the line to match pendingID. Callers hold s.mu.
func (s *Serial) updateIRQ() {
	s.setLevel(s.pendingID() != iirNone, false)
}

func (s *Serial) setLevel(high, force bool) {
	if s.irq == nil || (high == s.level && !force) {
		return
	}
	if err := s.irq.SetLevel(high); err != nil {
		s.stats.IRQErrors++
		s.stats.LastIRQErr = err
		return
	}
	s.level = high
}

// outDrained is called by the output goroutine when buffer space frees up
// after it had been full: the holding register is empty again.
func (s *Serial) outDrained() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.thrPending = true
	s.updateIRQ()
}
