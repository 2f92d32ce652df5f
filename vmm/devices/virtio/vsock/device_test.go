package vsock

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

// virtioLink is the fake guest's path through the real device: a
// virtiotest.Driver probes the device over PCI, and packets travel in
// virtqueues laid out as Linux 6.1 lays them out (rx: a 44-byte header
// buffer chained to a payload buffer; tx: header, then payload if any).
type virtioLink struct {
	t   testing.TB
	d   *virtiotest.Driver
	dev *Device

	mu         sync.Mutex
	rx, tx, ev *virtiotest.DriverQueue
	rxAddr     map[uint16][2]uint64
	rxUsed     []virtiotest.Used
	txAddr     map[uint16][2]uint64
	txFree     []uint16
	evAddr     map[uint16]uint64
	events     []uint32
	// evHeld: the guest's event work has not run yet (holdEvents);
	// onReset runs for each TRANSPORT_RESET before its buffer is posted
	// again, as Linux resets its sockets (fakeGuest.transportReset).
	evHeld  bool
	onReset func()

	wake       chan struct{}
	stop, done chan struct{}
}

const (
	linkRxPayload = 4096
	linkTxPayload = 4096
)

func newVirtioLink(t testing.TB, dev *Device, o virtiotest.Options) *virtioLink {
	t.Helper()
	d := virtiotest.NewDriver(t, dev)
	if err := d.Init(o); err != nil {
		t.Fatal(err)
	}
	if len(d.Queues) != 3 {
		t.Fatalf("%d queues, want rx, tx, event", len(d.Queues))
	}
	l := &virtioLink{t: t, d: d, dev: dev, rx: d.Queues[0], tx: d.Queues[1], ev: d.Queues[2],
		rxAddr: map[uint16][2]uint64{}, txAddr: map[uint16][2]uint64{}, evAddr: map[uint16]uint64{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	l.post()
	go l.poll()
	t.Cleanup(l.close)
	return l
}

// post makes the rx and event buffers available and lays out tx slots.
func (l *virtioLink) post() {
	d := l.d
	for head := uint16(0); head+1 < l.rx.Size; head += 2 {
		a := [2]uint64{d.Alloc(HeaderSize), d.Alloc(linkRxPayload)}
		l.rx.PutDesc(l.rx.Desc, head, a[0], HeaderSize, virtio.DescWrite|virtio.DescNext, head+1)
		l.rx.PutDesc(l.rx.Desc, head+1, a[1], linkRxPayload, virtio.DescWrite, 0)
		l.rxAddr[head] = a
		l.rx.Publish(head)
	}
	l.rx.Kick()
	for head := uint16(0); head+1 < l.tx.Size; head += 2 {
		l.txAddr[head] = [2]uint64{d.Alloc(HeaderSize), d.Alloc(linkTxPayload)}
		l.txFree = append(l.txFree, head)
	}
	for head := uint16(0); head < 8; head++ {
		a := d.Alloc(EventSize)
		l.ev.PutDesc(l.ev.Desc, head, a, EventSize, virtio.DescWrite, 0)
		l.evAddr[head] = a
		l.ev.Publish(head)
	}
	l.ev.Kick()
}

func (l *virtioLink) close() {
	close(l.stop)
	<-l.done
}

// poll turns interrupts into wakes and runs the event work: events are
// collected, acted on, and their buffers posted again (with a kick), as
// Linux's virtio_transport_event_work does.
func (l *virtioLink) poll() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		irq := l.d.IRQ.Wait(20 * time.Millisecond)
		l.mu.Lock()
		if irq {
			l.d.ReadISR() // lowers INTx, as the guest's handler does
		}
		var used []virtiotest.Used
		if !l.evHeld {
			l.ev.SetUsedEvent(l.ev.UsedIdx())
			used = l.ev.Collect()
		}
		onReset := l.onReset
		l.mu.Unlock()
		for _, u := range used {
			if u.Len == EventSize && binary.LittleEndian.Uint32(l.d.Read(l.evAddr[uint16(u.ID)], EventSize)) == EventTransportReset && onReset != nil {
				onReset()
			}
		}
		l.mu.Lock()
		for _, u := range used {
			if u.Len == EventSize {
				l.events = append(l.events, binary.LittleEndian.Uint32(l.d.Read(l.evAddr[uint16(u.ID)], EventSize)))
			}
			l.ev.Publish(uint16(u.ID))
		}
		if len(used) > 0 {
			l.ev.Kick()
		}
		l.mu.Unlock()
		if irq {
			select {
			case l.wake <- struct{}{}:
			default:
			}
		}
	}
}

// holdEvents makes the guest's event work late: events stay in the used
// ring until releaseEvents.
func (l *virtioLink) holdEvents() {
	l.mu.Lock()
	l.evHeld = true
	l.mu.Unlock()
}

func (l *virtioLink) releaseEvents() {
	l.mu.Lock()
	l.evHeld = false
	l.mu.Unlock()
}

func (l *virtioLink) Wake() <-chan struct{} { return l.wake }

// HandleTx puts one packet on the tx queue, waiting for a free slot.
func (l *virtioLink) HandleTx(h Header, payload []byte) {
	if len(payload) > linkTxPayload {
		l.t.Fatalf("fake guest tx payload %d > %d", len(payload), linkTxPayload)
	}
	deadline := time.Now().Add(10 * time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.txFree) == 0 {
		for _, u := range l.tx.Collect() {
			l.txFree = append(l.txFree, uint16(u.ID))
		}
		if len(l.txFree) > 0 {
			break
		}
		if time.Now().After(deadline) {
			l.t.Errorf("tx queue full for 10 s")
			return
		}
		l.mu.Unlock()
		time.Sleep(100 * time.Microsecond)
		l.mu.Lock()
	}
	head := l.txFree[0]
	l.txFree = l.txFree[1:]
	a := l.txAddr[head]
	l.d.Mem.Write(a[0], h.Bytes())
	if len(payload) == 0 {
		l.tx.PutDesc(l.tx.Desc, head, a[0], HeaderSize, 0, 0)
	} else {
		l.d.Mem.Write(a[1], payload)
		l.tx.PutDesc(l.tx.Desc, head, a[0], HeaderSize, virtio.DescNext, head+1)
		l.tx.PutDesc(l.tx.Desc, head+1, a[1], uint32(len(payload)), 0, 0)
	}
	l.tx.Publish(head)
	l.tx.Kick()
}

// NextRx returns the next received packet and gives its buffer back.
func (l *virtioLink) NextRx(buf []byte) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if len(l.rxUsed) == 0 {
			// Ask for an interrupt at the next entry (EVENT_IDX), then look.
			l.rx.SetUsedEvent(l.rx.UsedIdx())
			l.rxUsed = l.rx.Collect()
		}
		if len(l.rxUsed) == 0 {
			return 0
		}
		u := l.rxUsed[0]
		l.rxUsed = l.rxUsed[1:]
		head := uint16(u.ID)
		a, ok := l.rxAddr[head]
		if !ok || u.Len > HeaderSize+linkRxPayload {
			l.t.Errorf("rx used entry %+v does not match a posted buffer", u)
			return 0
		}
		n := int(u.Len)
		if n > 0 {
			copy(buf, l.d.Read(a[0], min(n, HeaderSize)))
			if n > HeaderSize {
				copy(buf[HeaderSize:], l.d.Read(a[1], n-HeaderSize))
			}
		}
		l.rx.Publish(head)
		l.rx.Kick()
		if n > 0 {
			return n
		}
	}
}

func (l *virtioLink) eventsSeen() []uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uint32(nil), l.events...)
}

func newTestDevice(t testing.TB, cfg MuxConfig) *Device {
	t.Helper()
	dir, err := os.MkdirTemp("", "vsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Path = filepath.Join(dir, "v.sock")
	dev, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return dev
}

func TestDeviceConfig(t *testing.T) {
	dev := newTestDevice(t, MuxConfig{})
	d := virtiotest.NewDriver(t, dev)
	if f := d.DeviceFeatures(); f&^(virtio.FeatureIndirectDesc|virtio.FeatureEventIdx|virtio.FeatureVersion1) != 0 {
		t.Errorf("device features %#x: want no device-specific bits (streams only)", f)
	}
	if err := d.Init(virtiotest.Options{}); err != nil {
		t.Fatal(err)
	}
	if cid := d.DeviceConfig(0, 8); cid != GuestCID {
		t.Errorf("guest_cid %d, want %d", cid, GuestCID)
	}
	if lo, hi := d.DeviceConfig(0, 4), d.DeviceConfig(4, 4); lo != GuestCID || hi != 0 {
		t.Errorf("guest_cid halves %d %d", lo, hi)
	}
	if v := d.DeviceConfig(8, 4); v != 0 {
		t.Errorf("past the config: %#x, want 0", v)
	}
}

// TestDeviceEndToEnd runs connections both ways through the virtio
// transport and queues, with and without EVENT_IDX and MSI-X.
func TestDeviceEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    virtiotest.Options
	}{
		{"msix", virtiotest.Options{}},
		{"event-idx", virtiotest.Options{Features: virtio.FeatureEventIdx}},
		{"intx", virtiotest.Options{INTx: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newTestDevice(t, MuxConfig{})
			m := dev.Mux()
			g := newFakeGuest(t, newVirtioLink(t, dev, tc.o), 256<<10, HeaderSize+MaxPayload)
			ctx := testCtx(t)
			for _, hostInit := range []bool{true, false} {
				hc, gs := openPair(t, ctx, m, g, hostInit, 52)
				up, down := randomBytes(1<<20, 5), randomBytes(1<<20, 6)
				errs := make(chan error, 2)
				go func() {
					_, err := hc.w.Write(down)
					if err == nil {
						err = hc.c.(*net.UnixConn).CloseWrite()
					}
					errs <- err
				}()
				go func() {
					err := gs.Write(ctx, up)
					gs.Shutdown(ShutdownSend)
					errs <- err
				}()
				hostGot, err := io.ReadAll(hc.r)
				if err != nil {
					t.Fatal(err)
				}
				guestGot, err := gs.ReadAll(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
				if !bytes.Equal(hostGot, up) || !bytes.Equal(guestGot, down) {
					t.Fatalf("host got %d bytes (%s), guest %d (%s); want sha %s and %s",
						len(hostGot), sha(hostGot), len(guestGot), sha(guestGot), sha(up), sha(down))
				}
				if err := gs.Close(ctx); err != nil {
					t.Fatal(err)
				}
				if !hostInit {
					break
				}
				hc.c.Close()
			}
			if s := dev.Stats(); s.BadChains != 0 || s.TxPackets == 0 || s.RxPackets == 0 {
				t.Errorf("device stats %+v", s)
			}
		})
	}
}

// TestDeviceRestore: a restored device has no connections (host sockets
// close) and sends the guest TRANSPORT_RESET on the event queue.
func TestDeviceRestore(t *testing.T) {
	dev := newTestDevice(t, MuxConfig{})
	link := newVirtioLink(t, dev, virtiotest.Options{})
	g := newFakeGuest(t, link, 64<<10, HeaderSize+MaxPayload)
	ctx := testCtx(t)
	hc, gs := openPair(t, ctx, dev.Mux(), g, true, 52)
	if err := gs.Write(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(hc.r, buf); err != nil {
		t.Fatal(err)
	}

	link.d.Trans.Pause()
	st, err := link.d.Trans.Save()
	if err != nil {
		t.Fatal(err)
	}
	dst := dev.Save()
	if err := dev.Restore(State{GuestCID: 7}); err == nil {
		t.Error("restore with another CID accepted")
	}
	if err := dev.Restore(dst); err != nil {
		t.Fatal(err)
	}
	if err := link.d.Trans.Restore(st); err != nil {
		t.Fatal(err)
	}
	link.d.Trans.Resume()
	if b, err := io.ReadAll(hc.r); err != nil || len(b) != 0 {
		t.Errorf("host socket after restore: %q, %v; want EOF", b, err)
	}
	waitFor(t, "TRANSPORT_RESET event", func() bool { return len(link.eventsSeen()) > 0 })
	if ev := link.eventsSeen(); len(ev) != 1 || ev[0] != EventTransportReset {
		t.Errorf("events %v, want one TRANSPORT_RESET (0)", ev)
	}
	if s := dev.Stats(); s.EventsSent != 1 {
		t.Errorf("stats %+v", s)
	}
	// The guest's old socket is unknown to the device now: its packets are
	// answered with RST, and a new connection works.
	g.mu.Lock()
	g.send(gs, OpRW, 0, []byte("stale"))
	g.mu.Unlock()
	waitFor(t, "RST for a stale connection", gs.isReset)
	hc2, gs2 := openPair(t, ctx, dev.Mux(), g, true, 53)
	gs2.Write(ctx, []byte("after"))
	buf = make([]byte, 5)
	if _, err := io.ReadFull(hc2.r, buf); err != nil || string(buf) != "after" {
		t.Fatalf("new connection after restore: %q, %v", buf, err)
	}
	if dev.Save().ResetPending {
		t.Error("reset still pending after delivery")
	}
}

// TestDeviceBadTxChain: a tx chain shorter than its header or payload is
// dropped and counted; the device keeps working.
func TestDeviceBadTxChain(t *testing.T) {
	dev := newTestDevice(t, MuxConfig{})
	link := newVirtioLink(t, dev, virtiotest.Options{})
	link.mu.Lock()
	link.tx.Add([]virtiotest.Buf{{Data: make([]byte, 10)}}, false)
	h := Header{SrcCID: GuestCID, DstCID: HostCID, Op: OpRW, Type: TypeStream, Len: 100}
	link.tx.Add([]virtiotest.Buf{{Data: h.Bytes()}, {Data: make([]byte, 50)}}, false)
	link.tx.Kick()
	link.mu.Unlock()
	waitFor(t, "bad chains counted", func() bool { return dev.Stats().BadChains == 2 })
	if st := link.d.Status(); st&virtio.StatusDeviceNeedsReset != 0 {
		t.Errorf("status %#x: a malformed packet should not need a device reset", st)
	}
}
