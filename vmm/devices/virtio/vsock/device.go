package vsock

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// Queue indices and sizes.
const (
	rxQueue    = 0
	txQueue    = 1
	eventQueue = 2
	queueSize  = 256
	// MaxPayload is the largest packet payload the device sends or accepts
	// (Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
	MaxPayload = 64 << 10
	// chainsPerPass bounds the work of one worker pass per queue.
	chainsPerPass = 64
)

// Device is the virtio-vsock device model: virtio.Device over a Mux.
// Queue work runs on one virtio.Worker; a relay goroutine turns the Mux's
// Wake into worker kicks while the device is active.
type Device struct {
	mux *Mux
	cid uint64

	mu        sync.Mutex // lifecycle; the worker's pass never takes it
	worker    *virtio.Worker
	relayStop chan struct{}
	relayDone chan struct{}

	smu        sync.Mutex
	resetEvent bool // send TRANSPORT_RESET once the event queue has a buffer
	stats      DeviceStats

	// Used only by the worker's pass.
	scratch []byte
	hdr     [HeaderSize]byte
}

// DeviceStats counts queue-level events (the Mux counts connections).
type DeviceStats struct {
	TxPackets, RxPackets uint64
	BadChains            uint64 // tx chains too short for their header or payload
	EventsSent           uint64 // TRANSPORT_RESET events delivered
}

var (
	_ virtio.Device = (*Device)(nil)
	_ virtio.Pauser = (*Device)(nil)
)

// New makes a vsock device and starts its host side (see MuxConfig). The
// owner calls Close after the transport is closed.
func New(cfg MuxConfig) (*Device, error) {
	m, err := NewMux(cfg)
	if err != nil {
		return nil, err
	}
	return &Device{mux: m, cid: m.guestCID, scratch: make([]byte, HeaderSize+MaxPayload)}, nil
}

// Mux returns the device's connection table (for its Stats).
func (d *Device) Mux() *Mux { return d.mux }

// Type is virtio device 19.
func (d *Device) Type() uint16 { return virtio.TypeVsock }

// Features: none. Without VIRTIO_VSOCK_F_SEQPACKET (bit 1) or
// NO_IMPLIED_STREAM (bit 2) a driver uses stream sockets only.
func (d *Device) Features() uint64 { return 0 }

// QueueSizes: rx, tx, event.
func (d *Device) QueueSizes() []uint16 { return []uint16{queueSize, queueSize, queueSize} }

// ReadConfig reads struct virtio_vsock_config (le64 guest_cid).
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [ConfigSize]byte
	binary.LittleEndian.PutUint64(cfg[:], d.cid)
	for i := range data {
		data[i] = 0
		if o := offset + uint64(i); o < ConfigSize {
			data[i] = cfg[o]
		}
	}
}

// WriteConfig ignores writes: the configuration is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts queue processing. The rx and tx queues are required; the
// event queue is used if enabled.
func (d *Device) Activate(a *virtio.Activation) error {
	if len(a.Queues) != 3 || a.Queues[rxQueue] == nil || a.Queues[txQueue] == nil {
		return fmt.Errorf("%w: vsock needs its rx and tx queues enabled", virtio.ErrBadQueue)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
	d.worker = virtio.StartWorker(func() (bool, error) { return d.pass(a) }, a.Fail)
	d.relayStop, d.relayDone = make(chan struct{}), make(chan struct{})
	go d.relay(d.worker, d.relayStop, d.relayDone)
	d.worker.Kick()
	return nil
}

// relay kicks the worker whenever the Mux has packets for the guest.
func (d *Device) relay(w *virtio.Worker, stop, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-stop:
			return
		case <-d.mux.Wake():
			w.Kick()
		}
	}
}

// QueueNotify: the driver added tx packets, rx buffers or event buffers.
func (d *Device) QueueNotify(int) {
	d.mu.Lock()
	w := d.worker
	d.mu.Unlock()
	if w != nil {
		w.Kick()
	}
}

// Reset stops queue processing and drops every connection (the driver
// forgets them too). A pending transport-reset event survives: the
// transport resets the device while restoring it.
func (d *Device) Reset() {
	d.mu.Lock()
	d.stopLocked()
	d.mu.Unlock()
	d.mux.Reset()
}

// stopLocked ends the worker and relay. Caller holds d.mu.
func (d *Device) stopLocked() {
	if d.worker == nil {
		return
	}
	close(d.relayStop)
	<-d.relayDone
	d.worker.Stop()
	d.worker = nil
}

// Pause holds off queue work (snapshots); host connections keep their
// bounded buffers meanwhile.
func (d *Device) Pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.worker != nil {
		d.worker.Pause()
	}
}

// Resume undoes Pause.
func (d *Device) Resume() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.worker != nil {
		d.worker.Resume()
	}
}

// Stats returns the queue counters.
func (d *Device) Stats() DeviceStats {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.stats
}

// Close stops the device and its host side (listener, connections).
func (d *Device) Close() error {
	d.Reset()
	return d.mux.Close()
}

// pass is one round of queue work on the worker goroutine: tx packets to
// the Mux, a pending event, then Mux packets into rx buffers.
func (d *Device) pass(a *virtio.Activation) (bool, error) {
	more := false
	txq, rxq, evq := a.Queues[txQueue], a.Queues[rxQueue], a.Queues[eventQueue]
	n := 0
	for ; n < chainsPerPass; n++ {
		c, err := txq.Pop()
		if err != nil {
			return false, fmt.Errorf("vsock: tx queue: %w", err)
		}
		if c == nil {
			break
		}
		if err := d.handleTx(a.Mem, c); err != nil {
			return false, err
		}
		if err := txq.Push(c.Head, 0); err != nil {
			return false, fmt.Errorf("vsock: tx queue: %w", err)
		}
	}
	more = more || n == chainsPerPass
	if err := txq.Notify(); err != nil {
		return false, fmt.Errorf("vsock: tx queue: %w", err)
	}
	if evq != nil {
		if err := d.sendEvent(a.Mem, evq); err != nil {
			return false, err
		}
	}
	for n = 0; n < chainsPerPass && d.mux.HasRx(); n++ {
		c, err := rxq.Pop()
		if err != nil {
			return false, fmt.Errorf("vsock: rx queue: %w", err)
		}
		if c == nil {
			break // the driver's QueueNotify on rx brings us back
		}
		written, err := d.fillRx(a.Mem, c)
		if err != nil {
			return false, err
		}
		if err := rxq.Push(c.Head, written); err != nil {
			return false, fmt.Errorf("vsock: rx queue: %w", err)
		}
	}
	more = more || n == chainsPerPass
	if err := rxq.Notify(); err != nil {
		return false, fmt.Errorf("vsock: rx queue: %w", err)
	}
	return more, nil
}

// handleTx reads one tx packet and hands it to the Mux. A chain too short
// for the header or the payload it declares is dropped and counted; a
// guest address outside RAM is a device error.
func (d *Device) handleTx(mem virtio.Memory, c *virtio.Chain) error {
	r := c.Reader(mem)
	if r.Remaining() < HeaderSize {
		d.badChain()
		d.mux.logf("tx chain %d: %d readable bytes, need a %d-byte header", c.Head, r.Remaining(), HeaderSize)
		return nil
	}
	if _, err := io.ReadFull(r, d.hdr[:]); err != nil {
		return fmt.Errorf("vsock: tx chain %d header: %w", c.Head, err)
	}
	h, _ := DecodeHeader(d.hdr[:])
	if h.Len > MaxPayload || uint64(h.Len) > r.Remaining() {
		d.badChain()
		d.mux.logf("tx chain %d: %v: payload of %d bytes, chain has %d (max %d)", c.Head, h, h.Len, r.Remaining(), MaxPayload)
		return nil
	}
	payload := d.scratch[:h.Len]
	if _, err := io.ReadFull(r, payload); err != nil {
		return fmt.Errorf("vsock: tx chain %d payload: %w", c.Head, err)
	}
	d.smu.Lock()
	d.stats.TxPackets++
	d.smu.Unlock()
	d.mux.HandleTx(h, payload)
	return nil
}

func (d *Device) badChain() {
	d.smu.Lock()
	d.stats.BadChains++
	d.smu.Unlock()
}

// fillRx writes the Mux's next packet into an rx chain and returns the
// bytes written (0 if the packet vanished, or the chain is too small for a
// header: the driver drops such a buffer).
func (d *Device) fillRx(mem virtio.Memory, c *virtio.Chain) (uint32, error) {
	if c.WriteLen < HeaderSize {
		d.badChain()
		return 0, nil
	}
	buf := d.scratch[:min(uint64(len(d.scratch)), c.WriteLen)]
	n := d.mux.NextRx(buf)
	if n == 0 {
		return 0, nil
	}
	if _, err := c.Writer(mem).Write(buf[:n]); err != nil {
		return 0, fmt.Errorf("vsock: rx chain %d: %w", c.Head, err)
	}
	d.smu.Lock()
	d.stats.RxPackets++
	d.smu.Unlock()
	return uint32(n), nil
}

// sendEvent delivers a pending TRANSPORT_RESET if the driver has posted an
// event buffer.
func (d *Device) sendEvent(mem virtio.Memory, evq *virtio.Queue) error {
	d.smu.Lock()
	pending := d.resetEvent
	d.smu.Unlock()
	if !pending {
		return nil
	}
	c, err := evq.Pop()
	if err != nil {
		return fmt.Errorf("vsock: event queue: %w", err)
	}
	if c == nil {
		return nil
	}
	var ev [EventSize]byte
	binary.LittleEndian.PutUint32(ev[:], EventTransportReset)
	written := uint32(0)
	if c.WriteLen >= EventSize {
		if _, err := c.Writer(mem).Write(ev[:]); err != nil {
			return fmt.Errorf("vsock: event chain %d: %w", c.Head, err)
		}
		written = EventSize
		d.smu.Lock()
		d.resetEvent = false
		d.stats.EventsSent++
		d.smu.Unlock()
	}
	if err := evq.Push(c.Head, written); err != nil {
		return fmt.Errorf("vsock: event queue: %w", err)
	}
	return evq.Notify()
}
