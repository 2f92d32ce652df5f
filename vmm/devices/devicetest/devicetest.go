package devicetest

import (
	"errors"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// ErrIRQFailed is what a FakeIRQ returns while Fail is set.
var ErrIRQFailed = errors.New("devicetest: fake IRQ line failure")

// FakeIRQ is a devices.IRQLine that remembers every level it was given.
type FakeIRQ struct {
	mu     sync.Mutex
	levels []bool
	fail   bool
}

var _ devices.IRQLine = (*FakeIRQ)(nil)

// SetLevel records high, or fails while Fail(true) is in effect.
func (f *FakeIRQ) SetLevel(high bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return ErrIRQFailed
	}
	f.levels = append(f.levels, high)
	return nil
}

// Fail makes later SetLevel calls fail (true) or succeed (false).
func (f *FakeIRQ) Fail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// High reports the last level set (false if none).
func (f *FakeIRQ) High() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.levels) > 0 && f.levels[len(f.levels)-1]
}

// Levels returns every level set so far, oldest first.
func (f *FakeIRQ) Levels() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.levels...)
}

// Rises counts transitions to high.
func (f *FakeIRQ) Rises() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.levels {
		if l {
			n++
		}
	}
	return n
}

// Ports is anything that takes port I/O: a device or a *devices.Bus.
type Ports interface {
	PortIn(port uint16, data []byte)
	PortOut(port uint16, data []byte)
}

// In8 reads one byte from port.
func In8(p Ports, port uint16) uint8 {
	var b [1]byte
	p.PortIn(port, b[:])
	return b[0]
}

// Out8 writes one byte to port.
func Out8(p Ports, port uint16, v uint8) { p.PortOut(port, []byte{v}) }

// In16 reads a little-endian word from port.
func In16(p Ports, port uint16) uint16 {
	var b [2]byte
	p.PortIn(port, b[:])
	return uint16(b[0]) | uint16(b[1])<<8
}

// Out16 writes a little-endian word to port.
func Out16(p Ports, port uint16, v uint16) { p.PortOut(port, []byte{byte(v), byte(v >> 8)}) }

// In32 reads a little-endian dword from port.
func In32(p Ports, port uint16) uint32 {
	var b [4]byte
	p.PortIn(port, b[:])
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Out32 writes a little-endian dword to port.
func Out32(p Ports, port uint16, v uint32) {
	p.PortOut(port, []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}
