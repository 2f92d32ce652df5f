package net

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// Type is the virtio device ID of a network device.
const Type uint16 = 1

// Device-specific feature bits (virtio 1.x, section 5.1.3).
const (
	FeatureMTU    = 1 << 3  // VIRTIO_NET_F_MTU: config holds the MTU
	FeatureMAC    = 1 << 5  // VIRTIO_NET_F_MAC: config holds the MAC
	FeatureStatus = 1 << 16 // VIRTIO_NET_F_STATUS: config holds the link status
)

// Queues, sizes and frame limits.
const (
	RxQueue   = 0
	TxQueue   = 1
	QueueSize = 256
	// HeaderLen is struct virtio_net_hdr_v1: with VERSION_1 the header
	// always has num_buffers, mergeable buffers or not.
	HeaderLen = 12
	// MinFrame is an Ethernet header; MaxFrame adds the default MTU of
	// 1500 and one 802.1Q tag (Config.MTU raises it).
	MinFrame = 14
	MaxFrame = 14 + DefaultMTU + 4
	// DefaultMTU is the MTU without Config.MTU; MinMTU and MaxMTU bound
	// Config.MTU (Linux's limits: an IPv4 minimum, a 16-bit IP length).
	DefaultMTU = 1500
	MinMTU     = 68
	MaxMTU     = 65535
	// passBudget bounds the frames one worker pass moves, so a busy queue
	// cannot starve pause or stop.
	passBudget = 64
	// rxBacklog is how many frames may wait between the reader and the
	// receive worker.
	rxBacklog = 64
)

// Device configuration layout (struct virtio_net_config).
const (
	cfgMAC       = 0
	cfgStatus    = 6
	cfgMaxPairs  = 8
	cfgMTU       = 10
	cfgLen       = 12
	statusLinkUp = 1 // VIRTIO_NET_S_LINK_UP
)

// CloseTimeout bounds how long Close waits for the reader goroutine after
// closing the backend.
const CloseTimeout = 5 * time.Second

// Backend carries Ethernet frames to and from the outside. ReadFrame blocks
// until one frame is in p (a frame longer than p may be truncated; the
// device drops frames longer than MaxFrame) and fails once the backend is
// closed; WriteFrame sends one frame and may block (it runs on the device's
// transmit goroutine). The device owns its backend and closes it in Close.
type Backend interface {
	ReadFrame(p []byte) (int, error)
	WriteFrame(p []byte) error
	Close() error
}

// Config is what New needs.
type Config struct {
	MAC     [6]byte
	Backend Backend
	// MTU, when not zero, is offered to the driver (VIRTIO_NET_F_MTU) and
	// frames up to MTU+18 bytes pass. Linux then posts receive buffers of
	// 64 KiB+ ("big packets") when it is above 1500: fewer, larger frames,
	// the cheapest way to cut per-frame exits without offloads.
	MTU uint16
}

// Stats are the device's counters since New.
type Stats struct {
	RxFrames, RxBytes uint64 // delivered to the guest
	RxDropped         uint64 // no active driver, too long, or no room in a chain
	TxFrames, TxBytes uint64 // sent to the backend
	TxDropped         uint64 // malformed chains and backend write errors
}

type counters struct {
	rxFrames, rxBytes, rxDropped atomic.Uint64
	txFrames, txBytes, txDropped atomic.Uint64
}

// Device is a virtio-net device (virtio.Device and virtio.Pauser).
type Device struct {
	backend  Backend
	mtu      uint16 // 0: DefaultMTU, not offered
	maxFrame int
	frames   chan []byte // reader -> receive worker
	closed   chan struct{}
	readErr  chan error // the reader's end, buffered
	stats    counters
	pool     sync.Pool

	closeOnce sync.Once

	mu     sync.Mutex
	mac    [6]byte
	linkUp bool
	act    *virtio.Activation
	rx, tx *virtio.Worker

	// Owned by the receive worker's passes (serialised by the worker).
	held []byte
	// Owned by the transmit worker's passes.
	txBuf []byte
}

// New returns a device with the link up and starts its reader goroutine;
// the caller must Close it.
func New(c Config) (*Device, error) {
	if c.Backend == nil {
		return nil, fmt.Errorf("%w: no backend", ErrConfig)
	}
	if c.MAC[0]&1 != 0 {
		return nil, fmt.Errorf("%w: MAC %x is a multicast address", ErrConfig, c.MAC)
	}
	if c.MAC == ([6]byte{}) {
		return nil, fmt.Errorf("%w: MAC is all zeros", ErrConfig)
	}
	maxFrame := MaxFrame
	if c.MTU != 0 {
		if c.MTU < MinMTU {
			return nil, fmt.Errorf("%w: MTU %d (want %d-%d)", ErrConfig, c.MTU, MinMTU, MaxMTU)
		}
		maxFrame = 14 + int(c.MTU) + 4
	}
	d := &Device{
		backend: c.Backend, mtu: c.MTU, maxFrame: maxFrame,
		frames: make(chan []byte, rxBacklog), closed: make(chan struct{}),
		readErr: make(chan error, 1), mac: c.MAC, linkUp: true,
		txBuf: make([]byte, HeaderLen+maxFrame),
	}
	d.pool.New = func() any { b := make([]byte, maxFrame); return &b }
	go d.readLoop()
	return d, nil
}

// Type implements virtio.Device.
func (d *Device) Type() uint16 { return Type }

// Features implements virtio.Device.
func (d *Device) Features() uint64 {
	if d.mtu != 0 {
		return FeatureMAC | FeatureStatus | FeatureMTU
	}
	return FeatureMAC | FeatureStatus
}

// MaxFrameLen is the longest frame the device passes (MTU + 18).
func (d *Device) MaxFrameLen() int { return d.maxFrame }

// QueueSizes implements virtio.Device: receive then transmit.
func (d *Device) QueueSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: mac[6], status, max_virtqueue_pairs
// (1) and mtu (le16 each).
func (d *Device) ReadConfig(off uint64, data []byte) {
	var cfg [cfgLen]byte
	binary.LittleEndian.PutUint16(cfg[cfgMaxPairs:], 1)
	binary.LittleEndian.PutUint16(cfg[cfgMTU:], d.mtu)
	d.mu.Lock()
	copy(cfg[cfgMAC:], d.mac[:])
	if d.linkUp {
		binary.LittleEndian.PutUint16(cfg[cfgStatus:], statusLinkUp)
	}
	d.mu.Unlock()
	for i := range data {
		data[i] = 0
		if o := off + uint64(i); o < cfgLen {
			data[i] = cfg[o]
		}
	}
}

// WriteConfig implements virtio.Device. With VERSION_1 the driver may not
// write the MAC (it would need VIRTIO_NET_F_CTRL_MAC_ADDR), so writes are
// ignored.
func (d *Device) WriteConfig(uint64, []byte) {}

// MAC returns the address the device reports.
func (d *Device) MAC() [6]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mac
}

// SetMAC changes the address in the device configuration: the hook a
// restored clone uses to get its own identity. Linux reads the MAC only at
// probe, so the guest must also set it on its interface (the agent does);
// the caller may signal a configuration change through the transport.
func (d *Device) SetMAC(mac [6]byte) error {
	if mac[0]&1 != 0 || mac == ([6]byte{}) {
		return fmt.Errorf("%w: MAC %x is not a unicast address", ErrConfig, mac)
	}
	d.mu.Lock()
	d.mac = mac
	d.mu.Unlock()
	return nil
}

// SetLink sets the link status the driver sees (signal a configuration
// change through the transport afterwards). Frames still flow: the status
// is advisory, as on real hardware.
func (d *Device) SetLink(up bool) {
	d.mu.Lock()
	d.linkUp = up
	d.mu.Unlock()
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{RxFrames: s.rxFrames.Load(), RxBytes: s.rxBytes.Load(), RxDropped: s.rxDropped.Load(),
		TxFrames: s.txFrames.Load(), TxBytes: s.txBytes.Load(), TxDropped: s.txDropped.Load()}
}

// Activate implements virtio.Device: it starts the receive and transmit
// workers.
func (d *Device) Activate(a *virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.act != nil {
		return fmt.Errorf("%w: activated twice without a reset", ErrConfig)
	}
	d.act = a
	d.rx = virtio.StartWorker(func() (bool, error) { return d.rxPass(a) }, a.Fail)
	d.tx = virtio.StartWorker(func() (bool, error) { return d.txPass(a) }, a.Fail)
	d.rx.Kick()
	d.tx.Kick()
	return nil
}

// QueueNotify implements virtio.Device: new receive buffers or frames to
// send; it only kicks a worker.
func (d *Device) QueueNotify(q int) {
	d.mu.Lock()
	rx, tx := d.rx, d.tx
	d.mu.Unlock()
	switch {
	case q == RxQueue && rx != nil:
		rx.Kick()
	case q == TxQueue && tx != nil:
		tx.Kick()
	}
}

// Reset implements virtio.Device: it stops the workers and drops frames
// waiting for the guest.
func (d *Device) Reset() {
	d.mu.Lock()
	rx, tx := d.rx, d.tx
	d.rx, d.tx, d.act = nil, nil, nil
	d.mu.Unlock()
	for _, w := range []*virtio.Worker{rx, tx} {
		if w != nil {
			w.Stop()
		}
	}
	// The workers are gone: their pass-owned state is ours now.
	if d.held != nil {
		d.putFrame(d.held)
		d.held = nil
		d.stats.rxDropped.Add(1)
	}
	for {
		select {
		case f := <-d.frames:
			d.putFrame(f)
			d.stats.rxDropped.Add(1)
		default:
			return
		}
	}
}

// Pause implements virtio.Pauser: no chain is in flight once it returns.
func (d *Device) Pause() {
	d.mu.Lock()
	rx, tx := d.rx, d.tx
	d.mu.Unlock()
	for _, w := range []*virtio.Worker{rx, tx} {
		if w != nil {
			w.Pause()
		}
	}
}

// Resume implements virtio.Pauser.
func (d *Device) Resume() {
	d.mu.Lock()
	rx, tx := d.rx, d.tx
	d.mu.Unlock()
	for _, w := range []*virtio.Worker{rx, tx} {
		if w != nil {
			w.Resume()
		}
	}
}

// Close resets the device, closes the backend and waits (up to
// CloseTimeout) for the reader goroutine.
func (d *Device) Close() error {
	d.Reset()
	var err error
	d.closeOnce.Do(func() {
		close(d.closed)
		if cerr := d.backend.Close(); cerr != nil {
			err = fmt.Errorf("virtio-net: closing backend: %w", cerr)
		}
		t := time.NewTimer(CloseTimeout)
		defer t.Stop()
		select {
		case <-d.readErr:
		case <-t.C:
			err = fmt.Errorf("virtio-net: backend reader still blocked %v after close", CloseTimeout)
		}
	})
	return err
}
