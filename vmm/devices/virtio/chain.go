package virtio

import (
	"encoding/binary"
	"fmt"
)

// Descriptor flags (split virtqueue).
const (
	DescNext     = 1
	DescWrite    = 2
	DescIndirect = 4
)

// Chain limits.
const (
	descSize = 16
	// MaxIndirect is the most descriptors an indirect table may hold (the
	// figure QEMU and Linux use as their queue maximum).
	MaxIndirect = 1024
	// MaxChainBytes is the most bytes one chain may describe: the used
	// ring's length field is 32 bits.
	MaxChainBytes = 1<<32 - 1
)

// Segment is one buffer of a chain: Len bytes at guest address Addr that the
// device may read (Write false) or must only write (Write true).
type Segment struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Chain is a descriptor chain the driver made available, flattened: direct
// and indirect descriptors become one list of segments, readable ones first.
type Chain struct {
	Head     uint16 // index of the head descriptor, returned in the used ring
	Segments []Segment
	ReadLen  uint64 // bytes in readable segments
	WriteLen uint64 // bytes in writable segments
}

// descriptor is one entry of a descriptor table as the driver wrote it.
type descriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func parseDesc(b []byte) descriptor {
	le := binary.LittleEndian
	return descriptor{addr: le.Uint64(b), len: le.Uint32(b[8:]), flags: le.Uint16(b[12:]), next: le.Uint16(b[14:])}
}

// ParseChain walks the chain that starts at head in the descriptor table at
// table (size entries) and returns it flattened. It fails, wrapping
// ErrBadChain or ErrBadAddress, on a loop, an index past the table, a chain
// longer than the table, an indirect descriptor that is nested, chained,
// empty, not a multiple of 16 bytes or longer than MaxIndirect, a readable
// segment after a writable one, or more than MaxChainBytes in total. indirect
// says whether VIRTIO_F_INDIRECT_DESC was negotiated.
func ParseChain(mem Memory, table uint64, size uint16, head uint16, indirect bool) (*Chain, error) {
	if head >= size {
		return nil, fmt.Errorf("%w: head %d is past the table of %d", ErrBadChain, head, size)
	}
	c := &Chain{Head: head}
	var raw [descSize]byte
	idx, n := head, 0
	for {
		n++
		if n > int(size) {
			return nil, fmt.Errorf("%w: head %d: more than %d descriptors (a loop?)", ErrBadChain, head, size)
		}
		if err := mem.Read(table+uint64(idx)*descSize, raw[:]); err != nil {
			return nil, fmt.Errorf("%w: head %d: descriptor %d: %w", ErrBadChain, head, idx, err)
		}
		d := parseDesc(raw[:])
		if d.flags&DescIndirect != 0 {
			if !indirect {
				return nil, fmt.Errorf("%w: head %d: descriptor %d is indirect but INDIRECT_DESC was not negotiated", ErrBadChain, head, idx)
			}
			if d.flags&DescNext != 0 {
				return nil, fmt.Errorf("%w: head %d: indirect descriptor %d also has NEXT", ErrBadChain, head, idx)
			}
			if err := c.addIndirect(mem, d); err != nil {
				return nil, fmt.Errorf("head %d: indirect descriptor %d: %w", head, idx, err)
			}
			return c, nil
		}
		if err := c.add(d); err != nil {
			return nil, fmt.Errorf("head %d: descriptor %d: %w", head, idx, err)
		}
		if d.flags&DescNext == 0 {
			return c, nil
		}
		if d.next >= size {
			return nil, fmt.Errorf("%w: head %d: descriptor %d points to %d, past the table of %d", ErrBadChain, head, idx, d.next, size)
		}
		idx = d.next
	}
}

// addIndirect appends the chain held in an indirect table.
func (c *Chain) addIndirect(mem Memory, d descriptor) error {
	if d.len == 0 || d.len%descSize != 0 || d.len/descSize > MaxIndirect {
		return fmt.Errorf("%w: table of %d bytes (want a multiple of %d, at most %d entries)", ErrBadChain, d.len, descSize, MaxIndirect)
	}
	count := uint16(d.len / descSize)
	table := make([]byte, d.len)
	if err := mem.Read(d.addr, table); err != nil {
		return fmt.Errorf("%w: table: %w", ErrBadChain, err)
	}
	idx := uint16(0)
	for n := 1; ; n++ {
		if n > int(count) {
			return fmt.Errorf("%w: more than %d descriptors in a table of %d (a loop?)", ErrBadChain, count, count)
		}
		e := parseDesc(table[int(idx)*descSize:])
		if e.flags&DescIndirect != 0 {
			return fmt.Errorf("%w: entry %d is itself indirect", ErrBadChain, idx)
		}
		if err := c.add(e); err != nil {
			return fmt.Errorf("entry %d: %w", idx, err)
		}
		if e.flags&DescNext == 0 {
			return nil
		}
		if e.next >= count {
			return fmt.Errorf("%w: entry %d points to %d, past the table of %d", ErrBadChain, idx, e.next, count)
		}
		idx = e.next
	}
}

func (c *Chain) add(d descriptor) error {
	w := d.flags&DescWrite != 0
	if !w && c.WriteLen > 0 {
		return fmt.Errorf("%w: readable buffer after a writable one", ErrBadChain)
	}
	if c.ReadLen+c.WriteLen+uint64(d.len) > MaxChainBytes {
		return fmt.Errorf("%w: more than %d bytes", ErrBadChain, uint64(MaxChainBytes))
	}
	if d.addr+uint64(d.len) < d.addr {
		return fmt.Errorf("%w: buffer [%#x, +%#x) wraps", ErrBadChain, d.addr, d.len)
	}
	if d.len == 0 {
		return nil // legal and useless
	}
	c.Segments = append(c.Segments, Segment{Addr: d.addr, Len: d.len, Write: w})
	if w {
		c.WriteLen += uint64(d.len)
	} else {
		c.ReadLen += uint64(d.len)
	}
	return nil
}

// Reader returns an io.Reader over the chain's readable bytes.
func (c *Chain) Reader(mem Memory) *ChainReader { return &ChainReader{mem: mem, segs: c.readable()} }

// Writer returns an io.Writer over the chain's writable bytes.
func (c *Chain) Writer(mem Memory) *ChainWriter { return &ChainWriter{mem: mem, segs: c.writable()} }

func (c *Chain) readable() []Segment {
	i := 0
	for i < len(c.Segments) && !c.Segments[i].Write {
		i++
	}
	return c.Segments[:i]
}

func (c *Chain) writable() []Segment {
	i := 0
	for i < len(c.Segments) && !c.Segments[i].Write {
		i++
	}
	return c.Segments[i:]
}

// Spans returns the pieces of the chain's readable (write false) or
// writable (write true) bytes from offset skip for n bytes, as segments; an
// error wrapping ErrBadChain if the chain has fewer.
func (c *Chain) Spans(write bool, skip, n uint64) ([]Segment, error) {
	segs := c.readable()
	if write {
		segs = c.writable()
	}
	var out []Segment
	for _, s := range segs {
		if n == 0 {
			break
		}
		l := uint64(s.Len)
		if skip >= l {
			skip -= l
			continue
		}
		take := min(l-skip, n)
		out = append(out, Segment{Addr: s.Addr + skip, Len: uint32(take), Write: s.Write})
		n -= take
		skip = 0
	}
	if n > 0 {
		return nil, fmt.Errorf("%w: head %d: %d bytes missing", ErrBadChain, c.Head, n)
	}
	return out, nil
}
