package vmm

import (
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/vmm/disk"
)

// What a snapshot writer (package snapshot) reads from a paused machine
// besides State and RAM: its configuration and its disks' contents.

// DiskImage is one of the machine's disks as the guest sees it: for a cow
// disk the base with the overlay's writes merged, unflushed ones included.
type DiskImage struct {
	Name string
	Disk disk.Disk
}

// Config returns the configuration the machine was built with, with what
// New chose filled in (a random MAC).
func (m *Machine) Config() Config { return m.cfg }

// Disks returns the machine's disks in guest order. Read them only while
// the machine is paused (no request in flight) and before Close.
func (m *Machine) Disks() []DiskImage { return append([]DiskImage(nil), m.disks...) }

// HoldMemory keeps guest memory and disks from being released until
// release is called: Close waits meanwhile (a snapshot reading RAM while
// the VM's process shuts down must not read unmapped memory). It fails
// on a closed machine. Hold it briefly: it also delays Pause and Run.
func (m *Machine) HoldMemory() (release func(), err error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: guest memory already released", ErrClosed)
	}
	var once sync.Once
	return func() { once.Do(m.mu.Unlock) }, nil
}
