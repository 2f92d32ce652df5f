package devices

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// IRQLine is one GSI of the in-kernel interrupt controller. SetLevel(true)
// asserts the line, SetLevel(false) deasserts it. Devices call it only on a
// change of level, and may call it from any goroutine.
type IRQLine interface {
	SetLevel(high bool) error
}

// PortDevice handles x86 port I/O. port is the absolute port number the guest
// accessed (not an offset), data is 1, 2 or 4 bytes: PortIn fills it,
// PortOut reads it. Implementations must be safe for concurrent vCPUs.
type PortDevice interface {
	PortIn(port uint16, data []byte)
	PortOut(port uint16, data []byte)
}

// MMIODevice handles memory-mapped I/O. addr is the absolute guest physical
// address accessed, data is 1 to 8 bytes. Implementations must be safe for
// concurrent vCPUs.
type MMIODevice interface {
	MMIORead(addr uint64, data []byte)
	MMIOWrite(addr uint64, data []byte)
}

// Sentinel errors returned (wrapped) by Bus registration.
var (
	// ErrOverlap: a new range intersects one already registered.
	ErrOverlap = errors.New("devices: address range overlaps a registered device")
	// ErrBadRange: a range is empty or wraps past the end of its space.
	ErrBadRange = errors.New("devices: invalid address range")
	// ErrNotRegistered: no device is registered at the given base.
	ErrNotRegistered = errors.New("devices: no device registered at base")
)

// BusStats counts accesses nobody claimed.
type BusStats struct {
	UnclaimedPortReads uint64 // PortIn that hit no device (answered 0xff..)
	DroppedPortWrites  uint64 // PortOut that hit no device
	UnclaimedMMIOReads uint64 // MMIORead that hit no device (answered 0xff..)
	DroppedMMIOWrites  uint64 // MMIOWrite that hit no device
	LastUnclaimedPort  uint16 // most recent unclaimed port, for diagnostics
	LastUnclaimedMMIO  uint64 // most recent unclaimed MMIO address
}

// busRange is one registration: [base, base+size) served by dev (a
// PortDevice or an MMIODevice).
type busRange struct {
	base, size uint64
	port       PortDevice
	mmio       MMIODevice
}

func (r busRange) end() uint64 { return r.base + r.size }

// rangeTable is an immutable sorted list of non-overlapping ranges. The Bus
// swaps in a new table on every registration so dispatch needs no lock and a
// device may (un)register ranges from inside its own access handler (the PCI
// host bridge does when the guest moves a BAR).
type rangeTable []busRange

func (t rangeTable) find(addr uint64) (busRange, bool) {
	i := sort.Search(len(t), func(i int) bool { return t[i].end() > addr })
	if i < len(t) && t[i].base <= addr {
		return t[i], true
	}
	return busRange{}, false
}

func (t rangeTable) insert(r busRange) (rangeTable, error) {
	i := sort.Search(len(t), func(i int) bool { return t[i].end() > r.base })
	if i < len(t) && t[i].base < r.end() {
		return nil, fmt.Errorf("%w: [%#x, %#x) intersects [%#x, %#x)", ErrOverlap, r.base, r.end(), t[i].base, t[i].end())
	}
	out := make(rangeTable, 0, len(t)+1)
	out = append(out, t[:i]...)
	out = append(out, r)
	return append(out, t[i:]...), nil
}

func (t rangeTable) remove(base uint64) (rangeTable, error) {
	for i, r := range t {
		if r.base == base {
			out := make(rangeTable, 0, len(t)-1)
			out = append(out, t[:i]...)
			return append(out, t[i+1:]...), nil
		}
	}
	return nil, fmt.Errorf("%w %#x", ErrNotRegistered, base)
}

// Bus dispatches port I/O and MMIO accesses to registered devices. Reads
// nobody claims return all ones; writes nobody claims are dropped; both are
// counted (Stats). Overlapping registrations are refused. All methods are
// safe for concurrent use; dispatch takes no lock.
type Bus struct {
	mu    sync.Mutex // serialises registrations
	ports atomic.Pointer[rangeTable]
	mmio  atomic.Pointer[rangeTable]

	unclaimedPortReads atomic.Uint64
	droppedPortWrites  atomic.Uint64
	unclaimedMMIOReads atomic.Uint64
	droppedMMIOWrites  atomic.Uint64
	lastPort           atomic.Uint32
	lastMMIO           atomic.Uint64
}

// NewBus returns an empty bus.
func NewBus() *Bus {
	b := &Bus{}
	b.ports.Store(&rangeTable{})
	b.mmio.Store(&rangeTable{})
	return b
}

// RegisterPort makes d serve ports [base, base+size).
func (b *Bus) RegisterPort(base, size uint16, d PortDevice) error {
	if d == nil || size == 0 || uint32(base)+uint32(size) > 1<<16 {
		return fmt.Errorf("%w: ports [%#x, +%#x)", ErrBadRange, base, size)
	}
	return b.register(&b.ports, busRange{base: uint64(base), size: uint64(size), port: d}, "port")
}

// RegisterMMIO makes d serve guest physical addresses [base, base+size).
func (b *Bus) RegisterMMIO(base, size uint64, d MMIODevice) error {
	if d == nil || size == 0 || base+size < base {
		return fmt.Errorf("%w: mmio [%#x, +%#x)", ErrBadRange, base, size)
	}
	return b.register(&b.mmio, busRange{base: base, size: size, mmio: d}, "mmio")
}

// UnregisterPort removes the port range that starts at base.
func (b *Bus) UnregisterPort(base uint16) error {
	return b.unregister(&b.ports, uint64(base), "port")
}

// UnregisterMMIO removes the MMIO range that starts at base.
func (b *Bus) UnregisterMMIO(base uint64) error {
	return b.unregister(&b.mmio, base, "mmio")
}

func (b *Bus) register(p *atomic.Pointer[rangeTable], r busRange, kind string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := p.Load().insert(r)
	if err != nil {
		return fmt.Errorf("devices: register %s: %w", kind, err)
	}
	p.Store(&t)
	return nil
}

func (b *Bus) unregister(p *atomic.Pointer[rangeTable], base uint64, kind string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, err := p.Load().remove(base)
	if err != nil {
		return fmt.Errorf("devices: unregister %s: %w", kind, err)
	}
	p.Store(&t)
	return nil
}

// PortIn dispatches a port read. Unclaimed ports read as all ones.
func (b *Bus) PortIn(port uint16, data []byte) {
	if r, ok := b.ports.Load().find(uint64(port)); ok {
		r.port.PortIn(port, data)
		return
	}
	fill(data, 0xff)
	b.unclaimedPortReads.Add(1)
	b.lastPort.Store(uint32(port))
}

// PortOut dispatches a port write. Unclaimed writes are dropped.
func (b *Bus) PortOut(port uint16, data []byte) {
	if r, ok := b.ports.Load().find(uint64(port)); ok {
		r.port.PortOut(port, data)
		return
	}
	b.droppedPortWrites.Add(1)
	b.lastPort.Store(uint32(port))
}

// MMIORead dispatches an MMIO read. Unclaimed addresses read as all ones.
func (b *Bus) MMIORead(addr uint64, data []byte) {
	if r, ok := b.mmio.Load().find(addr); ok {
		r.mmio.MMIORead(addr, data)
		return
	}
	fill(data, 0xff)
	b.unclaimedMMIOReads.Add(1)
	b.lastMMIO.Store(addr)
}

// MMIOWrite dispatches an MMIO write. Unclaimed writes are dropped.
func (b *Bus) MMIOWrite(addr uint64, data []byte) {
	if r, ok := b.mmio.Load().find(addr); ok {
		r.mmio.MMIOWrite(addr, data)
		return
	}
	b.droppedMMIOWrites.Add(1)
	b.lastMMIO.Store(addr)
}

// Stats returns the unclaimed-access counters.
func (b *Bus) Stats() BusStats {
	return BusStats{
		UnclaimedPortReads: b.unclaimedPortReads.Load(),
		DroppedPortWrites:  b.droppedPortWrites.Load(),
		UnclaimedMMIOReads: b.unclaimedMMIOReads.Load(),
		DroppedMMIOWrites:  b.droppedMMIOWrites.Load(),
		LastUnclaimedPort:  uint16(b.lastPort.Load()),
		LastUnclaimedMMIO:  b.lastMMIO.Load(),
	}
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}
