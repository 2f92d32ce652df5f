package virtio_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/virtio"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

const wait = 5 * time.Second

func initEcho(t *testing.T, o vt.Options) (*vt.Driver, *echoDev) {
	t.Helper()
	dev := &echoDev{}
	d := vt.NewDriver(t, dev)
	if err := d.Init(o); err != nil {
		t.Fatal(err)
	}
	return d, dev
}

// echo makes one request available on queue 0, kicks, and checks the used
// entry and the bytes the device wrote.
func echo(t *testing.T, d *vt.Driver, payload []byte, indirect bool) {
	t.Helper()
	q := d.Queues[0]
	head := q.Add([]vt.Buf{{Data: payload[:len(payload)/2]}, {Data: payload[len(payload)/2:]}, {Len: 3, Write: true}, {Len: len(payload), Write: true}}, indirect)
	q.Kick()
	used := q.WaitUsed(1, wait)
	if len(used) != 1 || used[0].ID != uint32(head) || used[0].Len != uint32(len(payload)) {
		t.Fatalf("used %+v, want head %d len %d (status %#x, err %v)", used, head, len(payload), d.Status(), d.Trans.Err())
	}
	addrs := q.BufAddrs[head]
	got := append(d.Read(addrs[2], 3), d.Read(addrs[3], len(payload)-3)...)
	if !bytes.Equal(got, payload) {
		t.Fatalf("device wrote %q, want %q", got, payload)
	}
}

func TestLinuxStyleProbeAndRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		indirect bool
	}{
		{"direct", 0, false},
		{"indirect", virtio.FeatureIndirectDesc, true},
		{"event-idx", virtio.FeatureEventIdx, false},
		{"all", virtio.FeatureIndirectDesc | virtio.FeatureEventIdx | 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := initEcho(t, vt.Options{Features: tc.features})
			if got := d.DeviceFeatures(); got != 1|virtio.FeatureIndirectDesc|virtio.FeatureEventIdx|virtio.FeatureVersion1 {
				t.Fatalf("offered features %#x", got)
			}
			for i := range 40 { // wraps the 16-entry ring twice
				echo(t, d, []byte("hello, virtio "+string(rune('a'+i%26))), tc.indirect)
			}
			msis := d.IRQ.MSIs()
			if len(msis) == 0 {
				t.Fatal("no MSI-X interrupt")
			}
			for _, m := range msis {
				if m.Addr != vt.MSIAddr || m.Data != 0x41 {
					t.Fatalf("MSI %+v, want queue 0's vector 1 (data 0x41)", m)
				}
			}
			if tc.features&virtio.FeatureEventIdx != 0 {
				if ev := d.Queues[0].AvailEvent(); ev != 40 {
					t.Fatalf("avail_event %d after 40 chains, want 40", ev)
				}
			}
		})
	}
}

func TestDeviceConfigAndQueueRegisters(t *testing.T) {
	d, _ := initEcho(t, vt.Options{Sizes: []uint16{8}})
	d.Bus.MMIOWrite(d.BAR()+virtio.DeviceOffset+2, []byte{0xab, 0xcd})
	if got := d.DeviceConfig(0, 4); got != 0xcdab0000 {
		t.Fatalf("device config %#x", got)
	}
	if n := d.Common(0x12, 2); n != 2 {
		t.Fatalf("num_queues %d", n)
	}
	d.SetCommon(0x16, 2, 0)
	if s := d.Common(0x18, 2); s != 8 {
		t.Fatalf("queue 0 size %d after the driver chose 8", s)
	}
	if e := d.Common(0x1c, 2); e != 1 {
		t.Fatalf("queue_enable %d", e)
	}
	if a := d.Common(0x20, 8); a != d.Queues[0].Desc {
		t.Fatalf("queue_desc %#x, want %#x", a, d.Queues[0].Desc)
	}
	d.SetCommon(0x16, 2, 5) // no such queue
	if s := d.Common(0x18, 2); s != 0 {
		t.Fatalf("absent queue size %d", s)
	}
	// A vector past the table reads back as NO_VECTOR.
	d.SetCommon(0x10, 2, 77)
	if v := d.Common(0x10, 2); v != virtio.NoVector {
		t.Fatalf("config vector %#x, want NO_VECTOR", v)
	}
}

func TestINTxThroughISR(t *testing.T) {
	d, _ := initEcho(t, vt.Options{INTx: true})
	echo(t, d, []byte("intx"), false)
	if high, rises := d.IRQ.INTx(); !high || rises != 1 {
		t.Fatalf("INTx high %v rises %d", high, rises)
	}
	if len(d.IRQ.MSIs()) != 0 {
		t.Fatal("MSI sent with MSI-X disabled")
	}
	// The guest masks INTx in the command register, then unmasks it with
	// the ISR still pending.
	d.SetConf16(pci.OffCommand, pci.CommandMemory|pci.CommandBusMaster|pci.CommandINTxDisable)
	if high, _ := d.IRQ.INTx(); high {
		t.Fatal("INTx high while disabled")
	}
	d.SetConf16(pci.OffCommand, pci.CommandMemory|pci.CommandBusMaster)
	if high, rises := d.IRQ.INTx(); !high || rises != 2 {
		t.Fatalf("INTx re-enabled with ISR pending: high %v rises %d", high, rises)
	}
	if isr := d.ReadISR(); isr != 1 {
		t.Fatalf("ISR %#x, want 1 (queue)", isr)
	}
	if high, _ := d.IRQ.INTx(); high {
		t.Fatal("INTx still high after reading the ISR")
	}
	if isr := d.ReadISR(); isr != 0 {
		t.Fatalf("ISR %#x after read, want 0", isr)
	}
}

func TestFeatureNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name string
		feat uint64
		ok   bool
	}{
		{"version1", virtio.FeatureVersion1, true},
		{"version1+device", virtio.FeatureVersion1 | 1, true},
		{"legacy (no VERSION_1)", 1, false},
		{"not offered", virtio.FeatureVersion1 | 1<<40, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := vt.NewDriver(t, &echoDev{})
			d.Reset()
			d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
			d.SetCommon(8, 4, 0)
			d.SetCommon(12, 4, tc.feat&0xffffffff)
			d.SetCommon(8, 4, 1)
			d.SetCommon(12, 4, tc.feat>>32)
			d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
			if got := d.Status()&virtio.StatusFeaturesOK != 0; got != tc.ok {
				t.Fatalf("FEATURES_OK %v, want %v", got, tc.ok)
			}
			// The driver's feature word reads back what it wrote.
			d.SetCommon(8, 4, 0)
			if got := d.Common(12, 4); got != tc.feat&0xffffffff {
				t.Fatalf("driver_feature low %#x", got)
			}
		})
	}
}

func TestResetStopsDeviceAndForgets(t *testing.T) {
	d, dev := initEcho(t, vt.Options{Sizes: []uint16{4}})
	echo(t, d, []byte("before"), false)
	d.Reset()
	if a, r := dev.counts(); a != 1 || r != 1 {
		t.Fatalf("activated %d reset %d", a, r)
	}
	d.SetCommon(0x16, 2, 0)
	if s, e, v := d.Common(0x18, 2), d.Common(0x1c, 2), d.Common(0x1a, 2); s != 16 || e != 0 || v != virtio.NoVector {
		t.Fatalf("after reset: size %d enable %d vector %#x", s, e, v)
	}
	// A notify after reset reaches nobody.
	d.Queues[0].Kick()
	if err := d.Init(vt.Options{Features: virtio.FeatureIndirectDesc}); err != nil {
		t.Fatal(err)
	}
	echo(t, d, []byte("after reset"), true)
	if a, _ := dev.counts(); a != 2 {
		t.Fatalf("activated %d times", a)
	}
}

func TestNotificationSuppression(t *testing.T) {
	t.Run("NO_INTERRUPT", func(t *testing.T) {
		d, _ := initEcho(t, vt.Options{})
		d.Queues[0].SetAvailFlags(1)
		echo(t, d, []byte("quiet"), false)
		time.Sleep(20 * time.Millisecond)
		if n := len(d.IRQ.MSIs()); n != 0 {
			t.Fatalf("%d interrupts despite NO_INTERRUPT", n)
		}
		d.Queues[0].SetAvailFlags(0)
		echo(t, d, []byte("loud"), false)
		if n := len(d.IRQ.MSIs()); n != 1 {
			t.Fatalf("%d interrupts, want 1", n)
		}
	})
	t.Run("EVENT_IDX", func(t *testing.T) {
		d, _ := initEcho(t, vt.Options{Features: virtio.FeatureEventIdx})
		q := d.Queues[0]
		q.ManualUsedEvent = true
		q.SetUsedEvent(100) // interrupt only when used idx passes 100
		for range 3 {
			echo(t, d, []byte("batch"), false)
		}
		if n := len(d.IRQ.MSIs()); n != 0 {
			t.Fatalf("%d interrupts before used_event", n)
		}
		q.SetUsedEvent(3) // the next entry (index 3 -> used idx 4) crosses it
		echo(t, d, []byte("crossing"), false)
		if n := len(d.IRQ.MSIs()); n != 1 {
			t.Fatalf("%d interrupts, want 1 on crossing used_event", n)
		}
	})
}

func TestMSIXMaskAndPending(t *testing.T) {
	d, _ := initEcho(t, vt.Options{})
	d.MaskVector(1, true)
	echo(t, d, []byte("masked"), false)
	if n := len(d.IRQ.MSIs()); n != 0 {
		t.Fatalf("%d messages through a masked vector", n)
	}
	if pba := d.PBA(); pba != 1<<1 {
		t.Fatalf("PBA %#x, want bit 1", pba)
	}
	d.MaskVector(1, false)
	if m := d.IRQ.MSIs(); len(m) != 1 || m[0].Data != 0x41 {
		t.Fatalf("after unmask: %+v", m)
	}
	if pba := d.PBA(); pba != 0 {
		t.Fatalf("PBA %#x after delivery", pba)
	}
}

func TestPCIConfigAccessCapability(t *testing.T) {
	d, _ := initEcho(t, vt.Options{})
	// Find the type-5 capability and read num_queues (common offset 0x12)
	// through its window.
	cap := 0
	for off := int(d.Conf32(0x34) & 0xff); off != 0; off = int(d.Conf32(off) >> 8 & 0xff) {
		if d.Conf32(off)&0xff == 0x09 && uint8(d.Conf32(off+3)) == 5 {
			cap = off
		}
	}
	if cap == 0 {
		t.Fatal("no PCI configuration access capability")
	}
	d.SetConf32(cap+8, virtio.CommonOffset+0x12)
	d.SetConf32(cap+12, 2)
	if got := d.Conf32(cap+16) & 0xffff; got != 2 {
		t.Fatalf("num_queues through the window: %d", got)
	}
	// A write through the window: queue_select = 1.
	d.SetConf32(cap+8, virtio.CommonOffset+0x16)
	d.SetConf32(cap+16, 1)
	if got := d.Common(0x16, 2); got != 1 {
		t.Fatalf("queue_select %d after a window write", got)
	}
}

func TestMalformedChainsNeedReset(t *testing.T) {
	const bad = vt.MemSize + 0x1000
	type setup func(q *vt.DriverQueue, d *vt.Driver)
	for _, tc := range []struct {
		name  string
		want  error
		setup setup
	}{
		{"loop", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			a := d.Alloc(8)
			q.PutDesc(q.Desc, 0, a, 8, 1, 1)
			q.PutDesc(q.Desc, 1, a, 8, 1, 0)
			q.Publish(0)
		}},
		{"head past table", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) { q.Publish(200) }},
		{"next past table", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, d.Alloc(8), 8, 1, 99)
			q.Publish(0)
		}},
		{"buffer outside RAM", virtio.ErrBadAddress, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, bad, 8, 0, 0)
			q.PutDesc(q.Desc, 1, d.Alloc(8), 8, 2, 0)
			q.PutDesc(q.Desc, 0, bad, 8, 1, 1)
			q.Publish(0)
		}},
		{"indirect table outside RAM", virtio.ErrBadAddress, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, bad, 32, 4, 0)
			q.Publish(0)
		}},
		{"indirect with NEXT", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, d.Alloc(32), 32, 4|1, 1)
			q.Publish(0)
		}},
		{"nested indirect", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			tbl := d.Alloc(16)
			q.PutDesc(tbl, 0, d.Alloc(16), 16, 4, 0)
			q.PutDesc(q.Desc, 0, tbl, 16, 4, 0)
			q.Publish(0)
		}},
		{"indirect odd length", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, d.Alloc(40), 20, 4, 0)
			q.Publish(0)
		}},
		{"indirect loop", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			tbl := d.Alloc(32)
			q.PutDesc(tbl, 0, d.Alloc(8), 8, 1, 1)
			q.PutDesc(tbl, 1, d.Alloc(8), 8, 1, 0)
			q.PutDesc(q.Desc, 0, tbl, 32, 4, 0)
			q.Publish(0)
		}},
		{"readable after writable", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, d.Alloc(8), 8, 2|1, 1)
			q.PutDesc(q.Desc, 1, d.Alloc(8), 8, 0, 0)
			q.Publish(0)
		}},
		{"too long", virtio.ErrBadChain, func(q *vt.DriverQueue, d *vt.Driver) {
			q.PutDesc(q.Desc, 0, 0, 0xffffffff, 1, 1)
			q.PutDesc(q.Desc, 1, 0, 0xffffffff, 2, 0)
			q.Publish(0)
		}},
		{"avail index jump", virtio.ErrBadQueue, func(q *vt.DriverQueue, d *vt.Driver) {
			d.Mem.Write(q.Avail+2, []byte{0x00, 0x10})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := initEcho(t, vt.Options{Features: virtio.FeatureIndirectDesc})
			tc.setup(d.Queues[0], d)
			d.Queues[0].Kick()
			deadline := time.Now().Add(wait)
			for d.Status()&virtio.StatusDeviceNeedsReset == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("status %#x: no DEVICE_NEEDS_RESET", d.Status())
				}
				time.Sleep(time.Millisecond)
			}
			if err := d.Trans.Err(); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if m := d.IRQ.MSIs(); len(m) == 0 || m[len(m)-1].Data != 0x40 {
				t.Fatalf("no configuration interrupt on vector 0: %+v", m)
			}
			if len(d.Queues[0].Collect()) != 0 {
				t.Fatal("a malformed chain was returned as used")
			}
			// The driver recovers by reset.
			if err := d.Init(vt.Options{}); err != nil {
				t.Fatal(err)
			}
			echo(t, d, []byte("recovered"), false)
		})
	}
}
