package virtiotest

import (
	"encoding/binary"
	"time"
)

// Buf is one buffer of a chain the test makes available: Data to give the
// device (readable), or Len bytes for the device to fill (Write).
type Buf struct {
	Data  []byte
	Len   int
	Write bool
}

// Used is one used ring entry.
type Used struct {
	ID, Len uint32
}

// DriverQueue is the driver's side of one split queue.
type DriverQueue struct {
	d                 *Driver
	Index             int
	Size              uint16
	Desc, Avail, Used uint64
	NotifyAddr        uint64

	// ManualUsedEvent stops Add from asking for an interrupt at the next
	// used entry (used_event = entries seen so far), as Linux does.
	ManualUsedEvent bool

	nextDesc uint16
	availIdx uint16
	lastUsed uint16
	BufAddrs map[uint16][]uint64 // head -> guest address of each buffer
}

func (d *Driver) newQueue(i int, size uint16) *DriverQueue {
	q := &DriverQueue{d: d, Index: i, Size: size, BufAddrs: map[uint16][]uint64{}}
	q.Desc = d.Alloc(16 * int(size))
	q.Avail = d.Alloc(6 + 2*int(size))
	q.Used = d.Alloc(6 + 8*int(size))
	return q
}

// PutDesc writes raw descriptor i.
func (q *DriverQueue) PutDesc(table uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	q.d.Mem.Write(table+16*uint64(i), b[:])
}

// Add makes a chain of bufs available (in the descriptor table, or through
// one indirect table) and returns its head; it does not notify.
func (q *DriverQueue) Add(bufs []Buf, indirect bool) uint16 {
	addrs := make([]uint64, len(bufs))
	for i, b := range bufs {
		n := b.Len
		if !b.Write {
			n = len(b.Data)
		}
		addrs[i] = q.d.Alloc(max(n, 1))
		if !b.Write {
			q.d.Mem.Write(addrs[i], b.Data)
		}
	}
	head := q.nextDesc % q.Size
	table, base, count := q.Desc, head, uint16(len(bufs))
	if indirect {
		table, base = q.d.Alloc(16*len(bufs)), 0
		q.PutDesc(q.Desc, head, table, uint32(16*len(bufs)), 4, 0)
		q.nextDesc++
	} else {
		q.nextDesc += count
	}
	for i, b := range bufs {
		flags := uint16(0)
		if b.Write {
			flags |= 2
		}
		next := uint16(0)
		if i < len(bufs)-1 {
			flags |= 1
			next = (base + uint16(i) + 1)
			if !indirect {
				next %= q.Size
			}
		}
		n := b.Len
		if !b.Write {
			n = len(b.Data)
		}
		idx := base + uint16(i)
		if !indirect {
			idx %= q.Size
		}
		q.PutDesc(table, idx, addrs[i], uint32(n), flags, next)
	}
	q.BufAddrs[head] = addrs
	if !q.ManualUsedEvent {
		q.SetUsedEvent(q.lastUsed)
	}
	q.Publish(head)
	return head
}

// Publish puts head in the avail ring and bumps avail->idx.
func (q *DriverQueue) Publish(head uint16) {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], head)
	q.d.Mem.Write(q.Avail+4+2*uint64(q.availIdx%q.Size), b[:])
	q.availIdx++
	binary.LittleEndian.PutUint16(b[:], q.availIdx)
	q.d.Mem.Write(q.Avail+2, b[:])
}

// SetAvailFlags writes avail->flags (1: no interrupts).
func (q *DriverQueue) SetAvailFlags(f uint16) {
	q.d.Mem.Write(q.Avail, []byte{byte(f), byte(f >> 8)})
}

// SetUsedEvent writes used_event (EVENT_IDX).
func (q *DriverQueue) SetUsedEvent(v uint16) {
	q.d.Mem.Write(q.Avail+4+2*uint64(q.Size), []byte{byte(v), byte(v >> 8)})
}

// AvailEvent reads avail_event (EVENT_IDX).
func (q *DriverQueue) AvailEvent() uint16 {
	var b [2]byte
	q.d.Mem.Read(q.Used+4+8*uint64(q.Size), b[:])
	return binary.LittleEndian.Uint16(b[:])
}

// Kick notifies the queue by writing its index to its notify address.
func (q *DriverQueue) Kick() { q.d.write(q.NotifyAddr, 2, uint64(q.Index)) }

// UsedIdx reads used->idx.
func (q *DriverQueue) UsedIdx() uint16 {
	var b [2]byte
	q.d.Mem.Read(q.Used+2, b[:])
	return binary.LittleEndian.Uint16(b[:])
}

// Collect returns the used entries added since the last call.
func (q *DriverQueue) Collect() []Used {
	var out []Used
	for idx := q.UsedIdx(); q.lastUsed != idx; q.lastUsed++ {
		var b [8]byte
		q.d.Mem.Read(q.Used+4+8*uint64(q.lastUsed%q.Size), b[:])
		out = append(out, Used{binary.LittleEndian.Uint32(b[:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return out
}

// WaitUsed waits up to timeout for n used entries and returns them (fewer on
// timeout).
func (q *DriverQueue) WaitUsed(n int, timeout time.Duration) []Used {
	deadline := time.Now().Add(timeout)
	var out []Used
	for {
		out = append(out, q.Collect()...)
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		// Woken by the device's interrupt; the timeout covers suppressed
		// interrupts.
		q.d.IRQ.Wait(time.Millisecond)
	}
}

// Read returns n bytes of guest memory at addr.
func (d *Driver) Read(addr uint64, n int) []byte {
	b := make([]byte, n)
	d.Mem.Read(addr, b)
	return b
}

// Rebind points a copy of a queue at another driver (after a restore into
// a second transport over the same memory).
func (q *DriverQueue) Rebind(d *Driver) {
	d.next = max(d.next, q.d.next)
	q.d = d
}

// WithQueues sets the driver's queues (after a restore) and returns it.
func (d *Driver) WithQueues(qs ...*DriverQueue) *Driver {
	d.Queues = qs
	return d
}
