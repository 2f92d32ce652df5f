package blk

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/disk"
)

// Feature bits (virtio 1.x, 5.2.3).
const (
	FeatureSegMax = 1 << 2
	FeatureRO     = 1 << 5
	FeatureFlush  = 1 << 9
)

// Request types and status values (5.2.6).
const (
	TypeIn    = 0
	TypeOut   = 1
	TypeFlush = 4
	TypeGetID = 8

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2

	SectorSize = 512
	IDLen      = 20 // GET_ID answers at most 20 bytes
	headerLen  = 16

	// DefaultQueueSize is the request queue's size.
	DefaultQueueSize = 256
	// PCIClass is what the transport should present (mass storage, other).
	PCIClass = 0x018000
	maxIO    = 1 << 20 // bytes moved per disk call
)

// Config describes a block device.
type Config struct {
	Disk disk.Disk
	// ID is the serial GET_ID returns (at most 20 bytes).
	ID        string
	QueueSize uint16 // DefaultQueueSize if 0
}

// Device is a virtio-blk device; it implements virtio.Device and
// virtio.Pauser.
type Device struct {
	disk     disk.Disk
	id       string
	qsize    uint16
	capacity uint64 // sectors

	w   virtio.WorkerSlot
	buf []byte // the worker's I/O buffer

	mu    sync.Mutex
	stats Stats
}

// Stats counts requests.
type Stats struct {
	Reads, Writes, Flushes, Errors uint64
	BytesRead, BytesWritten        uint64
}

// New returns a device over c.Disk.
func New(c Config) (*Device, error) {
	if c.Disk == nil {
		return nil, fmt.Errorf("%w: blk needs a disk", virtio.ErrConfig)
	}
	if len(c.ID) > IDLen {
		return nil, fmt.Errorf("%w: blk id %q is longer than %d bytes", virtio.ErrConfig, c.ID, IDLen)
	}
	qs := c.QueueSize
	if qs == 0 {
		qs = DefaultQueueSize
	}
	return &Device{disk: c.Disk, id: c.ID, qsize: qs, capacity: uint64(c.Disk.Size()) / SectorSize, buf: make([]byte, maxIO)}, nil
}

// Type is virtio.TypeBlock.
func (d *Device) Type() uint16 { return virtio.TypeBlock }

// Features offered: SEG_MAX, FLUSH and RO for a read-only disk.
func (d *Device) Features() uint64 {
	f := uint64(FeatureSegMax | FeatureFlush)
	if d.disk.ReadOnly() {
		f |= FeatureRO
	}
	return f
}

// QueueSizes is one request queue.
func (d *Device) QueueSizes() []uint16 { return []uint16{d.qsize} }

// ReadConfig serves struct virtio_blk_config: capacity (sectors) and
// seg_max.
func (d *Device) ReadConfig(off uint64, data []byte) {
	var c [24]byte
	binary.LittleEndian.PutUint64(c[0:], d.capacity)
	binary.LittleEndian.PutUint32(c[12:], uint32(d.qsize-2))
	for i := range data {
		if o := off + uint64(i); o < uint64(len(c)) {
			data[i] = c[o]
		} else {
			data[i] = 0
		}
	}
}

// WriteConfig ignores writes (writeback toggling is not offered).
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts the worker.
func (d *Device) Activate(a *virtio.Activation) error {
	q := a.Queues[0]
	if q == nil {
		return fmt.Errorf("%w: blk request queue not enabled", virtio.ErrBadQueue)
	}
	d.w.Start(func() (bool, error) { return d.pass(a.Mem, q) }, a.Fail)
	return nil
}

// QueueNotify kicks the worker.
func (d *Device) QueueNotify(int) { d.w.Kick() }

// Reset stops the worker.
func (d *Device) Reset() { _ = d.w.Stop() }

// Pause waits for the request in progress and holds off the rest.
func (d *Device) Pause() { d.w.Pause() }

// Resume undoes Pause.
func (d *Device) Resume() { d.w.Resume() }

// Stats returns the request counters (read them while paused or after
// Reset for exact figures).
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// State is the device's saved state: the identity of its disk, checked on
// Restore. Queue positions are the transport's.
type State struct {
	Capacity uint64
	ReadOnly bool
	ID       string
}

// Save returns the state.
func (d *Device) Save() State {
	return State{Capacity: d.capacity, ReadOnly: d.disk.ReadOnly(), ID: d.id}
}

// Restore checks that st was saved from a device over a disk of the same
// size and writability.
func (d *Device) Restore(st State) error {
	if st.Capacity != d.capacity || st.ReadOnly != d.disk.ReadOnly() {
		return fmt.Errorf("%w: blk saved with %d sectors (read-only %v), this disk has %d (read-only %v)",
			virtio.ErrBadState, st.Capacity, st.ReadOnly, d.capacity, d.disk.ReadOnly())
	}
	return nil
}
