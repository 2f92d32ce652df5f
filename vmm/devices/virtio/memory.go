package virtio

import (
	"fmt"
	"sync"
)

// Memory is guest RAM as a device sees it: reads and writes at
// guest-physical addresses. An access that is not entirely inside RAM fails
// with an error wrapping ErrBadAddress and touches nothing. Implementations
// must be safe for concurrent use.
type Memory interface {
	Read(gpa uint64, p []byte) error
	Write(gpa uint64, p []byte) error
}

// Interrupt is how a transport reaches the guest's interrupt controller: a
// message-signalled interrupt (MSI-X) or the level of the function's INTx
// line. The machine implements it with KVM (KVM_SIGNAL_MSI, KVM_IRQ_LINE);
// both may be called from any goroutine.
type Interrupt interface {
	SignalMSI(addr uint64, data uint32) error
	SetINTx(high bool) error
}

// SliceMemory is a Memory over one byte slice that starts at guest-physical
// address Base, for tests. Accesses are serialised (as a data-race detector
// wants; a real guest's memory is shared without locks).
type SliceMemory struct {
	Base uint64
	Mem  []byte
	mu   sync.Mutex
}

func (m *SliceMemory) span(gpa uint64, n int) ([]byte, error) {
	off := gpa - m.Base
	if gpa < m.Base || off > uint64(len(m.Mem)) || uint64(n) > uint64(len(m.Mem))-off {
		return nil, &AddressError{Addr: gpa, Len: n}
	}
	return m.Mem[off : off+uint64(n)], nil
}

// Read copies len(p) bytes at gpa into p.
func (m *SliceMemory) Read(gpa uint64, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// Write copies p to gpa.
func (m *SliceMemory) Write(gpa uint64, p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, err := m.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// AddressError names a guest range that is not in RAM. It wraps
// ErrBadAddress.
type AddressError struct {
	Addr uint64
	Len  int
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("virtio: guest range [%#x, +%#x) is not in RAM", e.Addr, e.Len)
}

// Unwrap makes errors.Is(err, ErrBadAddress) hold.
func (e *AddressError) Unwrap() error { return ErrBadAddress }

// DirectMemory is a Memory the host process maps: Slice returns the guest
// bytes at [gpa, gpa+n) themselves, for zero-copy I/O (a disk read straight
// into a guest buffer). The same bounds rule as Read applies. Only a memory
// served by another process (or anonymous RAM) may be sliced: the caller's
// own goroutines touch it.
type DirectMemory interface {
	Memory
	Slice(gpa uint64, n int) ([]byte, error)
}

// Slice returns the bytes at [gpa, gpa+n) themselves (DirectMemory).
func (m *SliceMemory) Slice(gpa uint64, n int) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.span(gpa, n)
}
