package pci

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// NumBARs is the number of base address registers of a type 0 function.
const NumBARs = 6

// BARKind says what a BAR decodes.
type BARKind uint8

// BAR kinds.
const (
	BARNone  BARKind = iota // unimplemented: reads as zero, sizing returns zero
	BARMem32                // 32-bit memory BAR
	BARMem64                // 64-bit memory BAR, occupies this register and the next
	BARIO                   // I/O port BAR
)

func (k BARKind) String() string {
	switch k {
	case BARNone:
		return "none"
	case BARMem32:
		return "mem32"
	case BARMem64:
		return "mem64"
	case BARIO:
		return "io"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// BAR flag bits in the low bits of the register.
const (
	barIOSpace      = 0x1
	barMemType64    = 0x4
	barPrefetchable = 0x8
)

// Size limits.
const (
	MinMemBARSize = 16
	MinIOBARSize  = 4
	MaxIOBARSize  = 256
)

// BAR describes one base address register. Size is a power of two.
type BAR struct {
	Kind         BARKind
	Size         uint64
	Prefetchable bool // memory BARs only
}

// SetBAR declares BAR i. A 64-bit BAR also takes register i+1, which must be
// unused. It must be called before the function is added to a Host; the
// address is zero until the host assigns one.
func (c *ConfigSpace) SetBAR(i int, b BAR) error {
	if err := checkBAR(i, b); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attached {
		return fmt.Errorf("BAR %d: %w", i, ErrAlreadyUsed)
	}
	if c.bars[i].Kind != BARNone || (i > 0 && c.bars[i-1].Kind == BARMem64) {
		return fmt.Errorf("%w: BAR %d is already declared", ErrBadBAR, i)
	}
	if b.Kind == BARMem64 && c.bars[i+1].Kind != BARNone {
		return fmt.Errorf("%w: 64-bit BAR %d needs register %d, which is already declared", ErrBadBAR, i, i+1)
	}
	c.bars[i] = b
	le := binary.LittleEndian
	off := OffBAR0 + 4*i
	mask := ^(b.Size - 1)
	switch b.Kind {
	case BARMem32, BARMem64:
		flags := uint32(0)
		if b.Kind == BARMem64 {
			flags |= barMemType64
		}
		if b.Prefetchable {
			flags |= barPrefetchable
		}
		le.PutUint32(c.data[off:], flags)
		le.PutUint32(c.wmask[off:], uint32(mask)&^0xf)
		if b.Kind == BARMem64 {
			le.PutUint32(c.data[off+4:], 0)
			le.PutUint32(c.wmask[off+4:], uint32(mask>>32))
		}
	case BARIO:
		le.PutUint32(c.data[off:], barIOSpace)
		le.PutUint32(c.wmask[off:], uint32(mask)&0xfffc)
	}
	return nil
}

func checkBAR(i int, b BAR) error {
	if i < 0 || i >= NumBARs {
		return fmt.Errorf("%w: index %d (want 0-%d)", ErrBadBAR, i, NumBARs-1)
	}
	if bits.OnesCount64(b.Size) != 1 {
		return fmt.Errorf("%w: BAR %d size %#x is not a power of two", ErrBadBAR, i, b.Size)
	}
	switch b.Kind {
	case BARMem32:
		if b.Size < MinMemBARSize || b.Size > 1<<31 {
			return fmt.Errorf("%w: 32-bit BAR %d size %#x outside [%#x, 2 GiB]", ErrBadBAR, i, b.Size, MinMemBARSize)
		}
	case BARMem64:
		if b.Size < MinMemBARSize || i == NumBARs-1 {
			return fmt.Errorf("%w: 64-bit BAR %d of size %#x (min %#x, index at most %d)", ErrBadBAR, i, b.Size, MinMemBARSize, NumBARs-2)
		}
	case BARIO:
		if b.Size < MinIOBARSize || b.Size > MaxIOBARSize || b.Prefetchable {
			return fmt.Errorf("%w: I/O BAR %d size %#x outside [%d, %d] or marked prefetchable", ErrBadBAR, i, b.Size, MinIOBARSize, MaxIOBARSize)
		}
	default:
		return fmt.Errorf("%w: BAR %d kind %v", ErrBadBAR, i, b.Kind)
	}
	return nil
}

// BAR returns the declaration of BAR i (Kind BARNone for an unused register
// or the upper half of a 64-bit BAR).
func (c *ConfigSpace) BAR(i int) BAR {
	if i < 0 || i >= NumBARs {
		return BAR{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bars[i]
}

// BARAddress returns the address BAR i holds now, as the guest programmed
// it. ok is false for an undeclared BAR.
func (c *ConfigSpace) BARAddress(i int) (addr uint64, ok bool) {
	if i < 0 || i >= NumBARs {
		return 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.barAddress(i)
}

func (c *ConfigSpace) barAddress(i int) (uint64, bool) {
	le := binary.LittleEndian
	off := OffBAR0 + 4*i
	lo := uint64(le.Uint32(c.data[off:]))
	switch c.bars[i].Kind {
	case BARMem32:
		return lo &^ 0xf, true
	case BARMem64:
		return lo&^0xf | uint64(le.Uint32(c.data[off+4:]))<<32, true
	case BARIO:
		return lo &^ 0x3, true
	}
	return 0, false
}

// setBARAddress stores addr into BAR i (host-side assignment).
func (c *ConfigSpace) setBARAddress(i int, addr uint64) {
	le := binary.LittleEndian
	off := OffBAR0 + 4*i
	flags := le.Uint32(c.data[off:]) & 0xf
	if c.bars[i].Kind == BARIO {
		flags &= 0x3
	}
	le.PutUint32(c.data[off:], uint32(addr)|flags)
	if c.bars[i].Kind == BARMem64 {
		le.PutUint32(c.data[off+4:], uint32(addr>>32))
	}
}
