package vmgenid

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// Size is the size of a generation ID.
const Size = 16

// ID is a generation ID.
type ID [Size]byte

// ErrBadConfig is returned (wrapped) by New for unusable memory or IRQ.
var ErrBadConfig = errors.New("vmgenid: invalid configuration")

// Stats counts what the device did.
type Stats struct {
	// Generations counts IDs written (the first one included).
	Generations uint64
	// Notifies counts interrupts sent; NotifyErrors those that failed.
	Notifies, NotifyErrors uint64
}

// Device is the generation ID in guest-visible memory and the interrupt
// that announces a new one.
type Device struct {
	mem []byte // Size bytes the guest reads the ID from
	irq devices.IRQLine

	mu    sync.Mutex
	stats Stats
}

// New returns the device over mem (at least Size bytes, the first Size are
// used) signalling on irq.
func New(mem []byte, irq devices.IRQLine) (*Device, error) {
	if len(mem) < Size {
		return nil, fmt.Errorf("%w: %d bytes of memory for a %d-byte ID", ErrBadConfig, len(mem), Size)
	}
	if irq == nil {
		return nil, fmt.Errorf("%w: no IRQ line", ErrBadConfig)
	}
	return &Device{mem: mem[:Size:Size], irq: irq}, nil
}

// ID returns the ID the guest sees now.
func (d *Device) ID() ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	var id ID
	copy(id[:], d.mem)
	return id
}

// Generate writes a fresh ID read from rnd (crypto/rand.Reader): never all
// zeros and never the current one. It does not notify the guest: at boot
// the driver reads the ID when it probes; after a restore call Notify.
func (d *Device) Generate(rnd io.Reader) (ID, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var id ID
	for range 4 {
		if _, err := io.ReadFull(rnd, id[:]); err != nil {
			return ID{}, fmt.Errorf("vmgenid: new ID: %w", err)
		}
		if id != (ID{}) && !bytes.Equal(id[:], d.mem) {
			copy(d.mem, id[:])
			d.stats.Generations++
			return id, nil
		}
	}
	return ID{}, errors.New("vmgenid: new ID: the random source repeats itself")
}

// Notify pulses the interrupt (high, then low: an edge), after which the
// guest rereads the ID.
func (d *Device) Notify() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	err := d.irq.SetLevel(true)
	if err == nil {
		err = d.irq.SetLevel(false)
	}
	if err != nil {
		d.stats.NotifyErrors++
		return fmt.Errorf("vmgenid: notify: %w", err)
	}
	d.stats.Notifies++
	return nil
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}
