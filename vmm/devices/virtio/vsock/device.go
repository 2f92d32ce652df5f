package vsock

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

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
	resetEvent bool      // send TRANSPORT_RESET once the event queue has a buffer
	holdSince  time.Time // when host REQUESTs began to wait for the guest's reset (Restore)
	stats      DeviceStats

	// Used only by the worker's pass (and Activate, between workers).
	scratch  []byte
	hdr      [HeaderSize]byte
	awaitAck bool   // TRANSPORT_RESET delivered; the guest has not yet posted its buffer again
	ackIdx   uint16 // the event queue's driver index when it was delivered
}

// resetAckTimeout bounds how long host connections wait for a restored
// guest to act on TRANSPORT_RESET (a guest that takes no events); then they
// go ahead as before the wait existed (a variable for tests).
var resetAckTimeout = 30 * time.Second

// ackPoll is how often the worker looks for the guest's acknowledgement
// while host connections wait: with EVENT_IDX the guest does not notify the
// event queue when it posts the buffer again.
const ackPoll = 2 * time.Millisecond

// DeviceStats counts queue-level events (the Mux counts connections).
type DeviceStats struct {
	TxPackets, RxPackets uint64
	BadChains            uint64 // tx chains too short for their header or payload
	EventsSent           uint64 // TRANSPORT_RESET events delivered
	// ResetAcks counts TRANSPORT_RESETs the guest acted on (it posted the
	// event buffer again) before held host connections went ahead;
	// ResetAckTimeouts those it did not act on within resetAckTimeout.
	ResetAcks, ResetAckTimeouts uint64
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
	d.smu.Lock()
	pending := d.resetEvent
	d.smu.Unlock()
	d.awaitAck = false
	if !pending {
		// A driver that (re)starts with no reset to deliver has no
		// sockets of an earlier life (Linux resets them when its
		// driver goes away): nothing for host connections to wait for.
		d.mux.ReleaseRequests()
	}
	d.worker = virtio.StartWorker(func() (bool, error) { return d.pass(a) }, a.Fail)
	d.relayStop, d.relayDone = make(chan struct{}), make(chan struct{})
	go d.relay(d.worker, d.relayStop, d.relayDone)
	d.worker.Kick()
	return nil
}

// relay kicks the worker whenever the Mux has packets for the guest, and
// every ackPoll while host REQUESTs wait for the guest's reset.
func (d *Device) relay(w *virtio.Worker, stop, done chan struct{}) {
	defer close(done)
	var t *time.Ticker
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		var tick <-chan time.Time
		if d.mux.Holding() {
			if t == nil {
				t = time.NewTicker(ackPoll)
			}
			tick = t.C
		} else if t != nil {
			t.Stop()
			t = nil
		}
		select {
		case <-stop:
			return
		case <-d.mux.Wake():
			w.Kick()
		case <-tick:
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
	if err := d.sendEvent(a.Mem, evq); err != nil {
		return false, err
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
// event buffer, then releases held host connections once the guest has
// acted on it (checkResetAck). evq is nil when the driver did not enable
// the event queue.
func (d *Device) sendEvent(mem virtio.Memory, evq *virtio.Queue) error {
	d.smu.Lock()
	pending := d.resetEvent
	d.smu.Unlock()
	if evq == nil {
		d.mux.ReleaseRequests() // no events: nothing to wait for
		return nil
	}
	if !pending {
		return d.checkResetAck(evq)
	}
	// The driver index before the event: Linux posts the buffer again
	// only after its event work has reset the sockets.
	idx, err := evq.DriverIndex()
	if err != nil {
		return fmt.Errorf("vsock: event queue: %w", err)
	}
	c, err := evq.Pop()
	if err != nil {
		return fmt.Errorf("vsock: event queue: %w", err)
	}
	if c == nil {
		return d.checkResetAck(evq) // no buffer yet: only the time bound applies
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
		d.awaitAck, d.ackIdx = true, idx
	}
	if err := evq.Push(c.Head, written); err != nil {
		return fmt.Errorf("vsock: event queue: %w", err)
	}
	return evq.Notify()
}

// checkResetAck releases host connections held since Restore once the
// guest has posted an event buffer after the TRANSPORT_RESET (it has reset
// its sockets: a connection made from now on is not among them), or when
// it has not within resetAckTimeout.
func (d *Device) checkResetAck(evq *virtio.Queue) error {
	if !d.mux.Holding() {
		return nil
	}
	if d.awaitAck {
		idx, err := evq.DriverIndex()
		if err != nil {
			return fmt.Errorf("vsock: event queue: %w", err)
		}
		if idx != d.ackIdx {
			d.awaitAck = false
			d.smu.Lock()
			d.stats.ResetAcks++
			d.smu.Unlock()
			d.mux.ReleaseRequests()
			return nil
		}
	}
	d.smu.Lock()
	late := !d.holdSince.IsZero() && time.Since(d.holdSince) > resetAckTimeout
	if late {
		d.stats.ResetAckTimeouts++
	}
	d.smu.Unlock()
	if late {
		d.mux.logf("the guest did not act on TRANSPORT_RESET within %v (event delivered: %v); host connections go ahead", resetAckTimeout, d.awaitAck)
		d.awaitAck = false
		d.mux.ReleaseRequests()
	}
	return nil
}
