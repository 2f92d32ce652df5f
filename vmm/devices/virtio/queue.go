package virtio

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
)

// Split-ring flags.
const (
	availNoInterrupt = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
)

// Queue is one split virtqueue. The transport fills in its configuration
// while the driver sets it up; after activation the device's goroutine takes
// chains with Pop, returns them with Push and calls Notify after a batch.
// Methods are safe for concurrent use.
type Queue struct {
	index   int
	maxSize uint16

	mu         sync.Mutex
	size       uint16
	ready      bool
	desc       uint64 // descriptor table
	avail      uint64 // driver area
	used       uint64 // device area
	msixVector uint16

	// Running state.
	mem          Memory
	indirect     bool
	eventIdx     bool
	lastAvail    uint16 // next avail ring slot to take
	usedIdx      uint16 // next used ring slot to fill (= used->idx)
	signalledIdx uint16 // usedIdx when the driver was last interrupted (EVENT_IDX)
	pending      bool   // used entries pushed since the last Notify
	interrupt    func() // raises this queue's interrupt
}

// NewQueue returns queue index with a maximum size. Transports make these;
// tests of a device may too.
func NewQueue(index int, maxSize uint16) *Queue {
	return &Queue{index: index, maxSize: maxSize, size: maxSize, msixVector: NoVector}
}

// Index is the queue's number in its device.
func (q *Queue) Index() int { return q.index }

// Size is the number of entries the driver chose.
func (q *Queue) Size() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size
}

// fence orders this goroutine's earlier guest-memory stores before its later
// loads (a locked instruction on x86), as EVENT_IDX's re-checks need.
var fenceWord atomic.Uint32

func fence() { fenceWord.Add(1) }

// check validates the configuration at activation.
func (q *Queue) check() error {
	switch {
	case q.size == 0 || q.size > q.maxSize || q.size&(q.size-1) != 0:
		return fmt.Errorf("%w: queue %d size %d (want a power of two up to %d)", ErrBadQueue, q.index, q.size, q.maxSize)
	case q.desc%16 != 0 || q.avail%2 != 0 || q.used%4 != 0:
		return fmt.Errorf("%w: queue %d rings misaligned (desc %#x, driver %#x, device %#x)", ErrBadQueue, q.index, q.desc, q.avail, q.used)
	}
	return nil
}

// start prepares the queue for a device (under q.mu).
func (q *Queue) start(mem Memory, features uint64, interrupt func()) {
	q.mem = mem
	q.indirect = features&FeatureIndirectDesc != 0
	q.eventIdx = features&FeatureEventIdx != 0
	q.interrupt = interrupt
}

// reset returns the queue to its power-on state.
func (q *Queue) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.setLocked(QueueState{Size: q.maxSize, MSIXVector: NoVector})
	q.mem, q.indirect, q.eventIdx, q.interrupt = nil, false, false, nil
}

// setLocked loads a configuration and position (under q.mu).
func (q *Queue) setLocked(st QueueState) {
	q.size, q.ready, q.desc, q.avail, q.used = st.Size, st.Ready, st.Desc, st.Avail, st.Used
	q.msixVector, q.lastAvail, q.usedIdx = st.MSIXVector, st.LastAvail, st.UsedIdx
	q.signalledIdx, q.pending = st.SignalledIdx, st.Pending
}

func (q *Queue) read16(addr uint64) (uint16, error) {
	var b [2]byte
	if err := q.mem.Read(addr, b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

func (q *Queue) write16(addr uint64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	return q.mem.Write(addr, b[:])
}

// Pop takes the next available chain, or returns nil when the driver has made
// none available. With EVENT_IDX it then asks the driver to notify at the
// next buffer. Errors wrap ErrBadQueue, ErrBadChain or ErrBadAddress.
func (q *Queue) Pop() (*Chain, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.ready || q.mem == nil {
		return nil, fmt.Errorf("%w: queue %d is not enabled", ErrBadQueue, q.index)
	}
	idx, err := q.read16(q.avail + 2)
	if err != nil {
		return nil, fmt.Errorf("%w: queue %d: driver area index: %w", ErrBadQueue, q.index, err)
	}
	if idx == q.lastAvail && q.eventIdx {
		// Ask for a notification at the next buffer, then look again: the
		// driver may have added one before it saw avail_event.
		if err := q.write16(q.used+4+8*uint64(q.size), q.lastAvail); err != nil {
			return nil, fmt.Errorf("%w: queue %d: avail_event: %w", ErrBadQueue, q.index, err)
		}
		fence()
		if idx, err = q.read16(q.avail + 2); err != nil {
			return nil, fmt.Errorf("%w: queue %d: driver area index: %w", ErrBadQueue, q.index, err)
		}
	}
	if idx == q.lastAvail {
		return nil, nil
	}
	if d := idx - q.lastAvail; d > q.size {
		return nil, fmt.Errorf("%w: queue %d: driver index %d is %d ahead of %d, more than the size %d", ErrBadQueue, q.index, idx, d, q.lastAvail, q.size)
	}
	head, err := q.read16(q.avail + 4 + 2*uint64(q.lastAvail%q.size))
	if err != nil {
		return nil, fmt.Errorf("%w: queue %d: ring slot %d: %w", ErrBadQueue, q.index, q.lastAvail%q.size, err)
	}
	c, err := ParseChain(q.mem, q.desc, q.size, head, q.indirect)
	if err != nil {
		return nil, fmt.Errorf("queue %d: %w", q.index, err)
	}
	q.lastAvail++
	return c, nil
}

// Push returns a chain to the driver with the number of bytes the device
// wrote into it.
func (q *Queue) Push(head uint16, written uint32) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.mem == nil {
		return fmt.Errorf("%w: queue %d is not running", ErrBadQueue, q.index)
	}
	var e [8]byte
	binary.LittleEndian.PutUint32(e[:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	if err := q.mem.Write(q.used+4+8*uint64(q.usedIdx%q.size), e[:]); err != nil {
		return fmt.Errorf("%w: queue %d: used slot %d: %w", ErrBadQueue, q.index, q.usedIdx%q.size, err)
	}
	q.usedIdx++
	if err := q.write16(q.used+2, q.usedIdx); err != nil {
		return fmt.Errorf("%w: queue %d: used index: %w", ErrBadQueue, q.index, err)
	}
	q.pending = true
	return nil
}

// Notify interrupts the driver if chains were pushed since the last Notify
// and the driver has not suppressed interrupts (VIRTQ_AVAIL_F_NO_INTERRUPT,
// or used_event with EVENT_IDX).
func (q *Queue) Notify() error {
	q.mu.Lock()
	need, err := q.needInterrupt()
	irq := q.interrupt
	q.mu.Unlock()
	if err != nil {
		return err
	}
	if need && irq != nil {
		irq()
	}
	return nil
}

func (q *Queue) needInterrupt() (bool, error) {
	if !q.pending || q.mem == nil {
		return false, nil
	}
	q.pending = false
	if q.eventIdx {
		fence()
		ev, err := q.read16(q.avail + 4 + 2*uint64(q.size))
		if err != nil {
			return false, fmt.Errorf("%w: queue %d: used_event: %w", ErrBadQueue, q.index, err)
		}
		old := q.signalledIdx
		q.signalledIdx = q.usedIdx
		// Interrupt if used_event lies in (old, new], the entries added since
		// the last interrupt (modulo 2^16).
		return q.usedIdx-ev-1 < q.usedIdx-old, nil
	}
	flags, err := q.read16(q.avail)
	if err != nil {
		return false, fmt.Errorf("%w: queue %d: driver flags: %w", ErrBadQueue, q.index, err)
	}
	return flags&availNoInterrupt == 0, nil
}

// QueueState is a queue's saved configuration and position.
type QueueState struct {
	Size               uint16
	Ready              bool
	Desc, Avail, Used  uint64
	MSIXVector         uint16
	LastAvail, UsedIdx uint16
	SignalledIdx       uint16
	Pending            bool
}

func (q *Queue) save() QueueState {
	q.mu.Lock()
	defer q.mu.Unlock()
	return QueueState{Size: q.size, Ready: q.ready, Desc: q.desc, Avail: q.avail, Used: q.used,
		MSIXVector: q.msixVector, LastAvail: q.lastAvail, UsedIdx: q.usedIdx,
		SignalledIdx: q.signalledIdx, Pending: q.pending}
}

func (q *Queue) restore(st QueueState) error {
	if st.Size > q.maxSize {
		return fmt.Errorf("%w: queue %d size %d exceeds its maximum %d", ErrBadState, q.index, st.Size, q.maxSize)
	}
	if st.Ready && (st.Size == 0 || st.Size&(st.Size-1) != 0) {
		return fmt.Errorf("%w: queue %d size %d is not a power of two", ErrBadState, q.index, st.Size)
	}
	if d := st.LastAvail - st.UsedIdx; d > st.Size {
		return fmt.Errorf("%w: queue %d has %d chains in flight (taken %d, returned %d), more than its size %d",
			ErrBadState, q.index, d, st.LastAvail, st.UsedIdx, st.Size)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.setLocked(st)
	return nil
}
