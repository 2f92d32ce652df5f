package net_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	vnet "github.com/smolvm/smolvm/vmm/devices/virtio/net"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

const wait = 5 * time.Second

var testMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newDevice(t *testing.T, o vt.Options) (*vt.Driver, *vnet.Device, *fakeBackend) {
	t.Helper()
	be := newFakeBackend()
	dev, err := vnet.New(vnet.Config{MAC: testMAC, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := dev.Close(); err != nil {
			t.Error(err)
		}
	})
	d := vt.NewDriver(t, dev)
	if err := d.Init(o); err != nil {
		t.Fatal(err)
	}
	return d, dev, be
}

// frame builds an Ethernet frame of n bytes whose payload encodes i.
func frame(i, n int) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], testMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	for j := 14; j < n; j++ {
		f[j] = byte(i + j)
	}
	return f
}

// postRx makes n receive buffers of size bytes available, Linux-style (one
// writable buffer per chain), and kicks.
func postRx(d *vt.Driver, n, size int) []uint16 {
	q := d.Queues[vnet.RxQueue]
	heads := make([]uint16, n)
	for i := range heads {
		heads[i] = q.Add([]vt.Buf{{Len: size, Write: true}}, false)
	}
	q.Kick()
	return heads
}

// sendTx makes frame f available on the transmit queue as a header and the
// frame, split the way the case asks, and kicks.
func sendTx(d *vt.Driver, f []byte, split, indirect bool) uint16 {
	hdr := make([]byte, vnet.HeaderLen)
	bufs := []vt.Buf{{Data: append(hdr, f...)}}
	if split {
		bufs = []vt.Buf{{Data: hdr}, {Data: f[:20]}, {Data: f[20:]}}
	}
	q := d.Queues[vnet.TxQueue]
	h := q.Add(bufs, indirect)
	q.Kick()
	return h
}

func TestConfigAndFeatures(t *testing.T) {
	d, dev, _ := newDevice(t, vt.Options{Features: vnet.FeatureMAC | vnet.FeatureStatus})
	want := uint64(vnet.FeatureMAC | vnet.FeatureStatus | virtio.FeatureVersion1 | virtio.FeatureIndirectDesc | virtio.FeatureEventIdx)
	if got := d.DeviceFeatures(); got != want {
		t.Fatalf("offered %#x, want %#x", got, want)
	}
	var mac [6]byte
	for i := range mac {
		mac[i] = byte(d.DeviceConfig(uint64(i), 1))
	}
	if mac != testMAC {
		t.Fatalf("config MAC %x, want %x", mac, testMAC)
	}
	if st := d.DeviceConfig(6, 2); st != 1 {
		t.Fatalf("status %#x, want link up (1)", st)
	}
	dev.SetLink(false)
	if st := d.DeviceConfig(6, 2); st != 0 {
		t.Fatalf("status %#x after SetLink(false), want 0", st)
	}
	newMAC := [6]byte{0x52, 0x54, 0, 0xaa, 0xbb, 0xcc}
	if err := dev.SetMAC(newMAC); err != nil {
		t.Fatal(err)
	}
	if got := d.DeviceConfig(0, 4); got != 0xaa005452 {
		t.Fatalf("config MAC bytes 0-3 %#x after SetMAC", got)
	}
	if err := dev.SetMAC([6]byte{1, 2, 3, 4, 5, 6}); !errors.Is(err, vnet.ErrConfig) {
		t.Fatalf("multicast MAC: %v, want ErrConfig", err)
	}
	if pairs, mtu := d.DeviceConfig(8, 2), d.DeviceConfig(10, 2); pairs != 1 || mtu != 0 {
		t.Fatalf("max_virtqueue_pairs %d, mtu %d; want 1 and 0 (MTU not offered)", pairs, mtu)
	}
	if d.DeviceConfig(12, 4) != 0 {
		t.Fatal("config past its end is not zero")
	}
}

func TestFramesBothWays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		split    bool
		indirect bool
		intx     bool
	}{
		{"plain", 0, false, false, false},
		{"split-tx", 0, true, false, false},
		{"indirect", virtio.FeatureIndirectDesc, true, true, false},
		{"event-idx", virtio.FeatureEventIdx, false, false, false},
		{"intx", 0, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, dev, be := newDevice(t, vt.Options{Features: tc.features | vnet.FeatureMAC, INTx: tc.intx})
			const n = 300 // more than a queue's size: the rings wrap
			// Guest to backend.
			for i := range n {
				f := frame(i, 60+i%1400)
				h := sendTx(d, f, tc.split, tc.indirect)
				if got := be.recv(t); !bytes.Equal(got, f) {
					t.Fatalf("frame %d: backend got %d bytes, want %d", i, len(got), len(f))
				}
				used := d.Queues[vnet.TxQueue].WaitUsed(1, wait)
				if len(used) != 1 || used[0].ID != uint32(h) {
					t.Fatalf("frame %d: tx used %+v, want head %d", i, used, h)
				}
			}
			// Backend to guest, buffers posted first, in batches.
			rx := d.Queues[vnet.RxQueue]
			for batch := 0; batch < n; batch += 50 {
				heads := postRx(d, 50, vnet.HeaderLen+1518)
				var frames [][]byte
				for i := range 50 {
					f := frame(batch+i, 60+(batch+i)%1455)
					frames = append(frames, f)
					be.toGuest <- f
				}
				used := rx.WaitUsed(50, wait)
				if len(used) != 50 {
					t.Fatalf("batch %d: %d used rx entries, want 50 (status %#x, err %v)", batch, len(used), d.Status(), d.Trans.Err())
				}
				for i, u := range used {
					if u.ID != uint32(heads[i]) || u.Len != uint32(vnet.HeaderLen+len(frames[i])) {
						t.Fatalf("rx %d: used %+v, want head %d len %d", batch+i, u, heads[i], vnet.HeaderLen+len(frames[i]))
					}
					buf := d.Read(rx.BufAddrs[heads[i]][0], int(u.Len))
					if nb := binary.LittleEndian.Uint16(buf[10:]); nb != 1 || !bytes.Equal(buf[:10], make([]byte, 10)) {
						t.Fatalf("rx %d: header %x, want zeros and num_buffers 1", batch+i, buf[:vnet.HeaderLen])
					}
					if !bytes.Equal(buf[vnet.HeaderLen:], frames[i]) {
						t.Fatalf("rx %d: frame differs", batch+i)
					}
				}
			}
			if tc.intx {
				if _, rises := d.IRQ.INTx(); rises == 0 {
					t.Fatal("no INTx interrupt")
				}
			} else if len(d.IRQ.MSIs()) == 0 {
				t.Fatal("no MSI-X interrupt")
			}
			s := dev.Stats()
			if s.RxFrames != n || s.TxFrames != n || s.RxDropped != 0 || s.TxDropped != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// Frames that arrive before the driver posts buffers wait, and arrive in
// order once it does.
func TestRxWaitsForBuffers(t *testing.T) {
	d, dev, be := newDevice(t, vt.Options{})
	for i := range 10 {
		be.toGuest <- frame(i, 100)
	}
	time.Sleep(50 * time.Millisecond)
	if s := dev.Stats(); s.RxFrames != 0 || s.RxDropped != 0 {
		t.Fatalf("stats %+v before buffers", s)
	}
	heads := postRx(d, 10, 2048)
	used := d.Queues[vnet.RxQueue].WaitUsed(10, wait)
	if len(used) != 10 {
		t.Fatalf("%d frames delivered, want 10", len(used))
	}
	for i, u := range used {
		got := d.Read(d.Queues[vnet.RxQueue].BufAddrs[heads[i]][0]+vnet.HeaderLen, 100)
		if !bytes.Equal(got, frame(i, 100)) {
			t.Fatalf("frame %d out of order or wrong (used %+v)", i, u)
		}
	}
}

func TestBadFramesAreDroppedNotFatal(t *testing.T) {
	d, dev, be := newDevice(t, vt.Options{})
	// A receive buffer too small for the frame: returned empty.
	h := postRx(d, 1, 64)[0]
	be.toGuest <- frame(1, 200)
	used := d.Queues[vnet.RxQueue].WaitUsed(1, wait)
	if len(used) != 1 || used[0].ID != uint32(h) || used[0].Len != 0 {
		t.Fatalf("small buffer: used %+v, want head %d len 0", used, h)
	}
	// Frames the backend gives that are not Ethernet-sized never reach a buffer.
	be.toGuest <- make([]byte, 5)
	be.toGuest <- make([]byte, vnet.MaxFrame+1)
	// A transmit chain shorter than a header and an Ethernet header, and
	// one longer than the largest frame.
	for _, n := range []int{vnet.HeaderLen, vnet.HeaderLen + vnet.MaxFrame + 1} {
		q := d.Queues[vnet.TxQueue]
		h := q.Add([]vt.Buf{{Data: make([]byte, n)}}, false)
		q.Kick()
		if u := q.WaitUsed(1, wait); len(u) != 1 || u[0].ID != uint32(h) {
			t.Fatalf("tx of %d bytes: used %+v", n, u)
		}
	}
	deadline := time.Now().Add(wait)
	for dev.Stats().RxDropped != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if s := dev.Stats(); s.RxDropped != 3 || s.TxDropped != 2 || s.RxFrames != 0 || s.TxFrames != 0 {
		t.Fatalf("stats %+v, want 3 rx and 2 tx dropped", s)
	}
	select {
	case f := <-be.fromGuest:
		t.Fatalf("backend got a %d-byte frame from a malformed chain", len(f))
	default:
	}
	if d.Status()&virtio.StatusDeviceNeedsReset != 0 {
		t.Fatal("device failed on a dropped frame")
	}
	// And the device still works.
	f := frame(9, 80)
	sendTx(d, f, false, false)
	if got := be.recv(t); !bytes.Equal(got, f) {
		t.Fatal("frame after drops differs")
	}
}

// A backend that refuses a frame costs that frame only.
func TestBackendWriteError(t *testing.T) {
	be := newFakeBackend()
	be.failWrite = true
	dev, err := vnet.New(vnet.Config{MAC: testMAC, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	d := vt.NewDriver(t, dev)
	if err := d.Init(vt.Options{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		sendTx(d, frame(i, 64), false, false)
	}
	if u := d.Queues[vnet.TxQueue].WaitUsed(3, wait); len(u) != 3 {
		t.Fatalf("%d used, want 3", len(u))
	}
	if s := dev.Stats(); s.TxDropped != 3 {
		t.Fatalf("stats %+v, want 3 tx dropped", s)
	}
}

// A bad guest address in a chain is a device error (DEVICE_NEEDS_RESET),
// not a panic.
func TestBadAddressFailsDevice(t *testing.T) {
	d, _, _ := newDevice(t, vt.Options{})
	q := d.Queues[vnet.TxQueue]
	h := q.Add([]vt.Buf{{Data: make([]byte, 100)}}, false)
	q.PutDesc(q.Desc, h, 1<<40, 100, 0, 0)
	q.Kick()
	deadline := time.Now().Add(wait)
	for d.Status()&virtio.StatusDeviceNeedsReset == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("status %#x: no DEVICE_NEEDS_RESET", d.Status())
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Trans.Err(); !errors.Is(err, virtio.ErrBadAddress) {
		t.Fatalf("transport error %v, want ErrBadAddress", err)
	}
}

// Frames that arrive while no driver is active are dropped; after a reset
// and a new probe the device works again.
func TestResetAndReprobe(t *testing.T) {
	d, dev, be := newDevice(t, vt.Options{})
	d.Reset()
	be.toGuest <- frame(1, 64)
	deadline := time.Now().Add(wait)
	for dev.Stats().RxDropped != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: frame to a reset device not dropped", dev.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if err := d.Init(vt.Options{}); err != nil {
		t.Fatal(err)
	}
	postRx(d, 1, 2048)
	be.toGuest <- frame(2, 64)
	if u := d.Queues[vnet.RxQueue].WaitUsed(1, wait); len(u) != 1 || u[0].Len != vnet.HeaderLen+64 {
		t.Fatalf("after reprobe: used %+v", u)
	}
}

func TestSaveRestore(t *testing.T) {
	d, dev, be := newDevice(t, vt.Options{})
	d.Trans.Pause()
	if _, err := d.Trans.Save(); err != nil {
		t.Fatal(err)
	}
	st := dev.Save()
	if st.MAC != testMAC || !st.LinkUp {
		t.Fatalf("saved %+v", st)
	}
	// Paused, the device moves no frames; resumed, it does.
	postRx(d, 1, 2048)
	be.toGuest <- frame(3, 64)
	time.Sleep(50 * time.Millisecond)
	if u := d.Queues[vnet.RxQueue].Collect(); len(u) != 0 {
		t.Fatalf("paused device delivered %+v", u)
	}
	d.Trans.Resume()
	if u := d.Queues[vnet.RxQueue].WaitUsed(1, wait); len(u) != 1 {
		t.Fatal("resumed device delivered nothing")
	}

	be2 := newFakeBackend()
	dev2, err := vnet.New(vnet.Config{MAC: [6]byte{2, 0, 0, 0, 0, 1}, Backend: be2})
	if err != nil {
		t.Fatal(err)
	}
	defer dev2.Close()
	if err := dev2.Restore(st); err != nil {
		t.Fatal(err)
	}
	if dev2.MAC() != testMAC {
		t.Fatalf("restored MAC %x", dev2.MAC())
	}
	if err := dev2.Restore(vnet.State{}); !errors.Is(err, vnet.ErrBadState) {
		t.Fatalf("zero MAC state: %v, want ErrBadState", err)
	}
	clone := [6]byte{0x52, 0x54, 0, 9, 9, 9}
	if err := dev2.SetMAC(clone); err != nil || dev2.Save().MAC != clone {
		t.Fatalf("SetMAC after restore: %v, MAC %x", err, dev2.Save().MAC)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []vnet.Config{
		{MAC: testMAC},
		{MAC: [6]byte{}, Backend: newFakeBackend()},
		{MAC: [6]byte{1, 0, 0, 0, 0, 1}, Backend: newFakeBackend()},
	} {
		if dev, err := vnet.New(c); !errors.Is(err, vnet.ErrConfig) {
			if dev != nil {
				dev.Close()
			}
			t.Errorf("New(%+v): %v, want ErrConfig", c, err)
		}
	}
}

func TestCloseStopsReaderAndClosesBackend(t *testing.T) {
	be := newFakeBackend()
	dev, err := vnet.New(vnet.Config{MAC: testMAC, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if !be.isClosed() {
		t.Fatal("backend not closed")
	}
	if err := dev.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkTx(b *testing.B) {
	be := newFakeBackend()
	dev, err := vnet.New(vnet.Config{MAC: testMAC, Backend: be})
	if err != nil {
		b.Fatal(err)
	}
	defer dev.Close()
	d := vt.NewDriver(b, dev)
	if err := d.Init(vt.Options{}); err != nil {
		b.Fatal(err)
	}
	go func() {
		for range be.fromGuest {
		}
	}()
	q := d.Queues[vnet.TxQueue]
	f := append(make([]byte, vnet.HeaderLen), frame(0, 1514)...)
	// Reuse one chain's memory: add once, then republish the same head.
	h := q.Add([]vt.Buf{{Data: f}}, false)
	q.Kick()
	q.WaitUsed(1, wait)
	b.SetBytes(1514)
	b.ResetTimer()
	for range b.N {
		q.Publish(h)
		q.Kick()
		if u := q.WaitUsed(1, wait); len(u) != 1 {
			b.Fatal(fmt.Sprint("no used entry: ", d.Trans.Err()))
		}
	}
}

// With Config.MTU the device offers VIRTIO_NET_F_MTU and passes frames up to
// MTU+18 bytes each way; longer ones are dropped.
func TestMTU(t *testing.T) {
	const mtu = 9000
	be := newFakeBackend()
	dev, err := vnet.New(vnet.Config{MAC: testMAC, Backend: be, MTU: mtu})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	d := vt.NewDriver(t, dev)
	if err := d.Init(vt.Options{Features: vnet.FeatureMTU}); err != nil {
		t.Fatal(err)
	}
	if d.DeviceFeatures()&vnet.FeatureMTU == 0 || d.DeviceConfig(10, 2) != mtu || dev.MaxFrameLen() != mtu+18 {
		t.Fatalf("features %#x, config mtu %d, max frame %d", d.DeviceFeatures(), d.DeviceConfig(10, 2), dev.MaxFrameLen())
	}
	f := frame(1, mtu+18)
	sendTx(d, f, true, false)
	if got := be.recv(t); !bytes.Equal(got, f) {
		t.Fatalf("tx of a %d-byte frame: got %d bytes", len(f), len(got))
	}
	heads := postRx(d, 2, vnet.HeaderLen+mtu+18)
	be.toGuest <- frame(2, mtu+19) // one byte too long: dropped
	be.toGuest <- f
	u := d.Queues[vnet.RxQueue].WaitUsed(1, wait)
	if len(u) != 1 || u[0].ID != uint32(heads[0]) || u[0].Len != uint32(vnet.HeaderLen+len(f)) {
		t.Fatalf("rx used %+v", u)
	}
	if got := d.Read(d.Queues[vnet.RxQueue].BufAddrs[heads[0]][0]+vnet.HeaderLen, len(f)); !bytes.Equal(got, f) {
		t.Fatal("rx frame differs")
	}
	if s := dev.Stats(); s.RxDropped != 1 {
		t.Fatalf("stats %+v, want the long frame dropped", s)
	}
	for _, bad := range []uint16{1, vnet.MinMTU - 1} {
		if _, err := vnet.New(vnet.Config{MAC: testMAC, Backend: newFakeBackend(), MTU: bad}); !errors.Is(err, vnet.ErrConfig) {
			t.Errorf("MTU %d: %v, want ErrConfig", bad, err)
		}
	}
}
