package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Configuration space layout (type 0 header).
const (
	ConfigSize = 256 // what configuration mechanism #1 reaches

	OffVendorID      = 0x00
	OffDeviceID      = 0x02
	OffCommand       = 0x04
	OffStatus        = 0x06
	OffRevision      = 0x08
	OffClassCode     = 0x09 // prog-if, subclass, class (3 bytes)
	OffCacheLineSize = 0x0c
	OffLatencyTimer  = 0x0d
	OffHeaderType    = 0x0e
	OffBAR0          = 0x10
	OffSubsysVendor  = 0x2c
	OffSubsysID      = 0x2e
	OffExpansionROM  = 0x30
	OffCapPtr        = 0x34
	OffInterruptLine = 0x3c
	OffInterruptPin  = 0x3d

	// CapStart is where the first capability goes.
	CapStart = 0x40
)

// Command register bits.
const (
	CommandIO           = 0x0001
	CommandMemory       = 0x0002
	CommandBusMaster    = 0x0004
	CommandParity       = 0x0040
	CommandSERR         = 0x0100
	CommandINTxDisable  = 0x0400
	commandWritable     = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
	StatusINTx          = 0x0008 // an INTx is pending (set by the device)
	StatusCapList       = 0x0010
	statusWriteOneClear = 0xf900 // error bits
)

// Capability IDs endpoints commonly add.
const (
	CapIDMSI    = 0x05
	CapIDVendor = 0x09 // virtio-pci's capabilities
	CapIDMSIX   = 0x11
)

// Sentinel errors.
var (
	ErrBadBAR      = errors.New("pci: invalid BAR")
	ErrNoSpace     = errors.New("pci: no space left")
	ErrBadState    = errors.New("pci: invalid state")
	ErrSlotInUse   = errors.New("pci: slot in use")
	ErrBadSlot     = errors.New("pci: invalid slot")
	ErrBadConfig   = errors.New("pci: invalid configuration")
	ErrAlreadyUsed = errors.New("pci: configuration space already attached to a host")
)

// Header is the identity of a function, written into its configuration
// space by NewConfigSpace.
type Header struct {
	VendorID, DeviceID             uint16
	ClassCode                      uint32 // class<<16 | subclass<<8 | prog-if
	Revision                       uint8
	SubsystemVendorID, SubsystemID uint16
	InterruptPin                   uint8 // 0: none, 1-4: INTA#-INTD#
}

// ConfigSpace is one function's 256-byte configuration space: the bytes, a
// mask of the bits the guest may write, a mask of write-one-to-clear bits, the
// BAR layout and the capability list. Its methods are safe for concurrent
// use. Guest accesses go through Read and Write (masks applied); the device
// itself uses the Uint*/SetUint* accessors, which ignore the masks.
type ConfigSpace struct {
	mu       sync.Mutex
	data     [ConfigSize]byte
	wmask    [ConfigSize]byte
	w1c      [ConfigSize]byte
	bars     [NumBARs]BAR
	capNext  int // first free byte for a capability
	capLast  int // offset of the last capability, 0 if none
	attached bool
}

// NewConfigSpace returns a configuration space for a type 0 (endpoint)
// function with header h.
func NewConfigSpace(h Header) (*ConfigSpace, error) {
	if h.VendorID == 0xffff || h.VendorID == 0 {
		return nil, fmt.Errorf("%w: vendor id %#04x", ErrBadConfig, h.VendorID)
	}
	if h.InterruptPin > 4 {
		return nil, fmt.Errorf("%w: interrupt pin %d (want 0-4)", ErrBadConfig, h.InterruptPin)
	}
	if h.ClassCode > 0xffffff {
		return nil, fmt.Errorf("%w: class code %#x is wider than 24 bits", ErrBadConfig, h.ClassCode)
	}
	c := &ConfigSpace{capNext: CapStart}
	le := binary.LittleEndian
	le.PutUint16(c.data[OffVendorID:], h.VendorID)
	le.PutUint16(c.data[OffDeviceID:], h.DeviceID)
	c.data[OffRevision] = h.Revision
	c.data[OffClassCode] = uint8(h.ClassCode)
	c.data[OffClassCode+1] = uint8(h.ClassCode >> 8)
	c.data[OffClassCode+2] = uint8(h.ClassCode >> 16)
	le.PutUint16(c.data[OffSubsysVendor:], h.SubsystemVendorID)
	le.PutUint16(c.data[OffSubsysID:], h.SubsystemID)
	c.data[OffInterruptPin] = h.InterruptPin

	le.PutUint16(c.wmask[OffCommand:], commandWritable)
	le.PutUint16(c.w1c[OffStatus:], statusWriteOneClear)
	c.wmask[OffCacheLineSize] = 0xff
	c.wmask[OffLatencyTimer] = 0xff
	c.wmask[OffInterruptLine] = 0xff
	return c, nil
}

// AddCapability appends a capability with the given ID. body is everything
// after the ID and next-pointer bytes; writable, if not nil, has the same
// length and marks the bits of body the guest may write. It returns the
// capability's offset in configuration space.
func (c *ConfigSpace) AddCapability(id uint8, body, writable []byte) (int, error) {
	if writable != nil && len(writable) != len(body) {
		return 0, fmt.Errorf("%w: capability %#x: write mask is %d bytes, body %d", ErrBadConfig, id, len(writable), len(body))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attached {
		return 0, fmt.Errorf("capability %#x: %w", id, ErrAlreadyUsed)
	}
	off := (c.capNext + 3) &^ 3
	if off+2+len(body) > ConfigSize {
		return 0, fmt.Errorf("%w: capability %#x of %d bytes at %#x passes the end of configuration space", ErrNoSpace, id, 2+len(body), off)
	}
	c.data[off] = id
	c.data[off+1] = 0
	copy(c.data[off+2:], body)
	if writable != nil {
		copy(c.wmask[off+2:], writable)
	}
	if c.capLast == 0 {
		c.data[OffCapPtr] = uint8(off)
	} else {
		c.data[c.capLast+1] = uint8(off)
	}
	c.data[OffStatus] |= StatusCapList
	c.capLast = off
	c.capNext = off + 2 + len(body)
	return off, nil
}

// Read copies len(data) bytes from offset off, as the guest sees them.
// Bytes past the end read as zero.
func (c *ConfigSpace) Read(off int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		if o := off + i; o >= 0 && o < ConfigSize {
			data[i] = c.data[o]
		} else {
			data[i] = 0
		}
	}
}

// Write applies a guest write of data at offset off: only writable bits
// change, write-one-to-clear bits clear where data has ones.
func (c *ConfigSpace) Write(off int, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		o := off + i
		if o < 0 || o >= ConfigSize {
			continue
		}
		m := c.wmask[o]
		c.data[o] = c.data[o]&^m | v&m
		c.data[o] &^= v & c.w1c[o]
	}
}

// Uint8 returns the byte at off (device-side access).
func (c *ConfigSpace) Uint8(off int) uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.data[off]
}

// Uint16 returns the little-endian word at off (device-side access).
func (c *ConfigSpace) Uint16(off int) uint16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint16(c.data[off:])
}

// Uint32 returns the little-endian dword at off (device-side access).
func (c *ConfigSpace) Uint32(off int) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.LittleEndian.Uint32(c.data[off:])
}

// SetUint8 stores v at off, ignoring the write mask (device-side access).
func (c *ConfigSpace) SetUint8(off int, v uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data[off] = v
}

// SetUint16 stores v at off, ignoring the write mask (device-side access).
func (c *ConfigSpace) SetUint16(off int, v uint16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	binary.LittleEndian.PutUint16(c.data[off:], v)
}

// SetUint32 stores v at off, ignoring the write mask (device-side access).
func (c *ConfigSpace) SetUint32(off int, v uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	binary.LittleEndian.PutUint32(c.data[off:], v)
}

// Command returns the command register.
func (c *ConfigSpace) Command() uint16 { return c.Uint16(OffCommand) }

// INTxEnabled reports whether the guest allows the function's INTx (command
// bit 10 clear).
func (c *ConfigSpace) INTxEnabled() bool { return c.Command()&CommandINTxDisable == 0 }

// SetINTxStatus sets or clears the status register's interrupt bit; a device
// using INTx keeps it equal to its line level.
func (c *ConfigSpace) SetINTxStatus(pending bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pending {
		c.data[OffStatus] |= StatusINTx
	} else {
		c.data[OffStatus] &^= StatusINTx
	}
}

// ConfigState is a function's saved configuration space.
type ConfigState struct {
	Data [ConfigSize]byte
}

// Save returns the configuration space bytes.
func (c *ConfigSpace) Save() ConfigState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConfigState{Data: c.data}
}

// Restore replaces the bytes with st after checking that st describes the
// same function: identity, header type, BAR flag bits and the capability
// chain must match. For a function on a Host use Host.Restore, which also
// re-registers the BAR ranges.
func (c *ConfigSpace) Restore(st ConfigState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.sameFunction(&st.Data); err != nil {
		return err
	}
	c.data = st.Data
	return nil
}

// check reports whether Restore would accept st, changing nothing.
func (c *ConfigSpace) check(st *ConfigState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sameFunction(&st.Data)
}

func (c *ConfigSpace) sameFunction(d *[ConfigSize]byte) error {
	fixed := []struct {
		name     string
		off, len int
	}{
		{"vendor/device id", OffVendorID, 4},
		{"revision/class", OffRevision, 4},
		{"header type", OffHeaderType, 1},
		{"subsystem ids", OffSubsysVendor, 4},
		{"capability pointer", OffCapPtr, 1},
		{"interrupt pin", OffInterruptPin, 1},
	}
	for _, f := range fixed {
		for i := f.off; i < f.off+f.len; i++ {
			if d[i] != c.data[i] {
				return fmt.Errorf("%w: %s at %#x is % x, this function has % x", ErrBadState, f.name, f.off,
					d[f.off:f.off+f.len], c.data[f.off:f.off+f.len])
			}
		}
	}
	// The capability chain: each capability's ID and next pointer.
	for off, n := int(c.data[OffCapPtr]), 0; off != 0 && off < ConfigSize-1 && n < ConfigSize/4; off, n = int(c.data[off+1]), n+1 {
		if d[off] != c.data[off] || d[off+1] != c.data[off+1] {
			return fmt.Errorf("%w: capability at %#x is id %#02x next %#02x, this function has id %#02x next %#02x",
				ErrBadState, off, d[off], d[off+1], c.data[off], c.data[off+1])
		}
	}
	for i := OffBAR0; i < OffBAR0+4*NumBARs; i++ {
		// Bits the guest cannot write (BAR type flags, hardwired zeros).
		if ro := ^c.wmask[i]; d[i]&ro != c.data[i]&ro {
			return fmt.Errorf("%w: BAR byte %#x is %#02x, read-only bits %#02x must be %#02x", ErrBadState, i, d[i], ro, c.data[i]&ro)
		}
	}
	return nil
}
