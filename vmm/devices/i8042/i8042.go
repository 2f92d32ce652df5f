package i8042

import (
	"errors"
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// Default ports.
const (
	DefaultDataPort    = 0x60
	DefaultCommandPort = 0x64
)

// Status register bits.
const (
	StatusOBF     = 0x01 // output buffer full: data port has a byte
	StatusIBF     = 0x02 // input buffer full: never set, commands complete at once
	StatusSys     = 0x04 // system flag (self-test passed)
	StatusCmd     = 0x08 // last write was to the command port
	StatusUnlock  = 0x10 // keyboard not inhibited (Linux warns "Keylock active" without it)
	StatusAuxOBF  = 0x20 // the byte in the output buffer is from the mouse port
	StatusTimeout = 0x40 // the addressed device did not answer
)

// Controller commands (written to the command port).
const (
	cmdReadCTR      = 0x20
	cmdWriteCTR     = 0x60
	cmdDisableAux   = 0xa7
	cmdEnableAux    = 0xa8
	cmdTestAux      = 0xa9
	cmdSelfTest     = 0xaa
	cmdTestKbd      = 0xab
	cmdDisableKbd   = 0xad
	cmdEnableKbd    = 0xae
	cmdReadOutPort  = 0xd0
	cmdWriteOutPort = 0xd1
	cmdWriteKbdOut  = 0xd2 // put a byte in the output buffer as if from the keyboard
	cmdWriteAuxOut  = 0xd3 // ditto, from the mouse port
	cmdWriteAux     = 0xd4 // send the next data byte to the mouse
	cmdPulseReset   = 0xfe
)

// Command byte (CTR) bits used here.
const (
	ctrKbdInt  = 0x01
	ctrAuxInt  = 0x02
	ctrSys     = 0x04
	ctrKbdDis  = 0x10
	ctrAuxDis  = 0x20
	ctrXlate   = 0x40
	defaultCTR = ctrKbdInt | ctrSys | ctrXlate
)

// Answers.
const (
	selfTestOK  = 0x55
	portTestOK  = 0x00
	noDevice    = 0xfe // what the controller returns when a device times out
	outPortInit = 0x01 // bit 0: reset line not asserted (active low)
)

// maxQueue bounds queued answers; a guest that never reads cannot grow it.
const maxQueue = 16

// Answer is one byte waiting in the output buffer.
type Answer struct {
	Value   uint8
	Aux     bool // from the mouse port (status bit 5)
	Timeout bool // the addressed device did not answer (status bit 6)
}

// ErrBadState is returned (wrapped) by Restore.
var ErrBadState = errors.New("i8042: invalid state")

// Controller is the keyboard controller. It is a devices.PortDevice.
type Controller struct {
	dataPort, cmdPort uint16
	reset             func()

	mu      sync.Mutex
	ctr     uint8    // command byte
	outPort uint8    // output port
	pending uint8    // command waiting for its data byte (0 = none)
	lastCmd bool     // last write went to the command port
	queue   []Answer // answers not yet read, oldest first
	resets  uint64

	kbdIRQ, auxIRQ     devices.IRQLine // optional (SetIRQs)
	kbdLevel, auxLevel bool
	irqErrors          uint64
	lastIRQErr         error
}

// New returns a controller on the given ports; reset is called (on the vCPU
// thread, must not block) when the guest pulses the reset line.
func New(dataPort, cmdPort uint16, reset func()) (*Controller, error) {
	if dataPort == cmdPort {
		return nil, fmt.Errorf("i8042: data and command port are both %#x", dataPort)
	}
	if reset == nil {
		return nil, errors.New("i8042: a reset callback is required")
	}
	return &Controller{dataPort: dataPort, cmdPort: cmdPort, reset: reset, ctr: defaultCTR, outPort: outPortInit}, nil
}

// Register claims the data and command ports on b.
func (c *Controller) Register(b *devices.Bus) error {
	for _, p := range []uint16{c.dataPort, c.cmdPort} {
		if err := b.RegisterPort(p, 1, c); err != nil {
			return fmt.Errorf("i8042: port %#x: %w", p, err)
		}
	}
	return nil
}

// SetIRQs gives the controller its keyboard (ISA IRQ 1) and mouse (ISA IRQ
// 12) lines; either may be nil. Without them every answer is polled, which
// is all Linux's reboot path needs; with them a guest that probes the
// controller gets its interrupt-driven answers (the AUX IRQ delivery test,
// keyboard and mouse timeouts) at once. Call it before the guest runs.
func (c *Controller) SetIRQs(kbd, aux devices.IRQLine) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.kbdIRQ, c.auxIRQ = kbd, aux
	c.updateIRQs(true)
}

// IRQErrors returns how many SetLevel calls failed, and the last error.
func (c *Controller) IRQErrors() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.irqErrors, c.lastIRQErr
}

// updateIRQs drives each line high while the byte at the head of the output
// buffer belongs to its port and the command byte enables its interrupt.
// Callers hold c.mu.
func (c *Controller) updateIRQs(force bool) {
	kbd, aux := false, false
	if len(c.queue) > 0 {
		if c.queue[0].Aux {
			aux = c.ctr&ctrAuxInt != 0
		} else {
			kbd = c.ctr&ctrKbdInt != 0
		}
	}
	c.setLevel(c.kbdIRQ, &c.kbdLevel, kbd, force)
	c.setLevel(c.auxIRQ, &c.auxLevel, aux, force)
}

func (c *Controller) setLevel(line devices.IRQLine, cur *bool, high, force bool) {
	if line == nil || (*cur == high && !force) {
		return
	}
	if err := line.SetLevel(high); err != nil {
		c.irqErrors++
		c.lastIRQErr = err
		return
	}
	*cur = high
}

// Resets returns how many times the guest asked for a reset.
func (c *Controller) Resets() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resets
}

// PortIn reads the status register (command port) or the next answer (data
// port; 0 when there is none).
func (c *Controller) PortIn(port uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(data)
	if len(data) == 0 {
		return
	}
	switch port {
	case c.cmdPort:
		data[0] = c.status()
	case c.dataPort:
		if len(c.queue) > 0 {
			data[0] = c.queue[0].Value
			c.queue = c.queue[1:]
			// Each byte is its own interrupt: drop the lines so the next
			// byte, if any, makes a fresh edge.
			c.setLevel(c.kbdIRQ, &c.kbdLevel, false, false)
			c.setLevel(c.auxIRQ, &c.auxLevel, false, false)
			c.updateIRQs(false)
		}
	}
}

func (c *Controller) status() uint8 {
	s := uint8(StatusSys | StatusUnlock)
	if c.lastCmd {
		s |= StatusCmd
	}
	if len(c.queue) > 0 {
		s |= StatusOBF
		if c.queue[0].Aux {
			s |= StatusAuxOBF
		}
		if c.queue[0].Timeout {
			s |= StatusTimeout
		}
	}
	return s
}

// PortOut handles a command or a data byte.
func (c *Controller) PortOut(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	c.mu.Lock()
	doReset := false
	switch port {
	case c.cmdPort:
		c.lastCmd = true
		doReset = c.command(v)
	case c.dataPort:
		c.lastCmd = false
		doReset = c.dataByte(v)
	}
	if doReset {
		c.resets++
	}
	c.updateIRQs(false)
	c.mu.Unlock()
	if doReset {
		c.reset()
	}
}

// command runs a controller command; it reports whether to reset.
func (c *Controller) command(v uint8) bool {
	c.pending = 0
	switch {
	case v == cmdReadCTR:
		c.push(c.ctr, false, false)
	case v == cmdWriteCTR, v == cmdWriteOutPort, v == cmdWriteKbdOut, v == cmdWriteAuxOut, v == cmdWriteAux:
		c.pending = v
	case v == cmdSelfTest:
		c.ctr = defaultCTR
		c.push(selfTestOK, false, false)
	case v == cmdTestKbd, v == cmdTestAux:
		c.push(portTestOK, false, false)
	case v == cmdDisableKbd:
		c.ctr |= ctrKbdDis
	case v == cmdEnableKbd:
		c.ctr &^= ctrKbdDis
	case v == cmdDisableAux:
		c.ctr |= ctrAuxDis
	case v == cmdEnableAux:
		c.ctr &^= ctrAuxDis
	case v == cmdReadOutPort:
		c.push(c.outPort, false, false)
	case v >= 0xf0:
		// Pulse output port lines: the low nibble is active-low, bit 0 is
		// the CPU reset line (0xFE pulses only it).
		return v&0x01 == 0
	}
	return false
}

// dataByte handles a write to the data port: the argument of a pending
// command, or a byte for the keyboard. It reports whether to reset.
func (c *Controller) dataByte(v uint8) bool {
	cmd := c.pending
	c.pending = 0
	switch cmd {
	case cmdWriteCTR:
		c.ctr = v
	case cmdWriteOutPort:
		c.outPort = v
		return v&0x01 == 0 // driving the reset line low resets the CPU
	case cmdWriteKbdOut:
		c.push(v, false, false)
	case cmdWriteAuxOut:
		c.push(v, true, false)
	case cmdWriteAux:
		c.push(noDevice, true, true)
	default: // a keyboard command: there is no keyboard
		c.push(noDevice, false, true)
	}
	return false
}

func (c *Controller) push(v uint8, aux, timeout bool) {
	if len(c.queue) >= maxQueue {
		return
	}
	c.queue = append(c.queue, Answer{Value: v, Aux: aux, Timeout: timeout})
}
