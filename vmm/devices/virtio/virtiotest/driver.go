package virtiotest

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices"
	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// Guest memory layout of a Driver: RAM from 0; rings and buffers are
// allocated upward from AllocBase.
const (
	MemSize   = 8 << 20
	AllocBase = 0x10000
	Slot      = 3
	// MSIAddr is the address the driver programs into MSI-X entries; the
	// data is 0x40 + vector.
	MSIAddr = 0xfee00000
)

// Driver is a virtio driver for one device, talking through a pci.Host and a
// devices.Bus exactly as a guest would.
type Driver struct {
	T     testing.TB
	Bus   *devices.Bus
	Host  *pci.Host
	Mem   *virtio.SliceMemory
	IRQ   *FakeInterrupt
	Trans *virtio.Transport

	bar                                  uint64
	common, notify, isr, devcfg, msixTab uint64
	notifyMul                            uint32
	msixCap                              int
	next                                 uint64
	Queues                               []*DriverQueue
	Features                             uint64
}

// NewDriver builds a transport for dev over fresh memory, puts it on a PCI
// bus at Slot, enables memory decoding and bus mastering and walks the
// capabilities as virtio_pci_modern does.
func NewDriver(t testing.TB, dev virtio.Device) *Driver {
	t.Helper()
	return newDriver(t, dev, false)
}

// NewCopyingDriver is NewDriver with a guest memory that is not a
// virtio.DirectMemory, so devices take their copying paths.
func NewCopyingDriver(t testing.TB, dev virtio.Device) *Driver {
	t.Helper()
	return newDriver(t, dev, true)
}

// copyOnly hides SliceMemory's Slice.
type copyOnly struct{ m *virtio.SliceMemory }

func (c copyOnly) Read(gpa uint64, p []byte) error  { return c.m.Read(gpa, p) }
func (c copyOnly) Write(gpa uint64, p []byte) error { return c.m.Write(gpa, p) }

func newDriver(t testing.TB, dev virtio.Device, copying bool) *Driver {
	t.Helper()
	d := &Driver{T: t, Bus: devices.NewBus(), Mem: &virtio.SliceMemory{Mem: make([]byte, MemSize)}, IRQ: NewFakeInterrupt(), next: AllocBase}
	var err error
	if d.Host, err = pci.NewHost(pci.DefaultConfig(d.Bus)); err != nil {
		t.Fatal(err)
	}
	var mem virtio.Memory = d.Mem
	if copying {
		mem = copyOnly{d.Mem}
	}
	if d.Trans, err = virtio.NewTransport(virtio.TransportConfig{Device: dev, Mem: mem, IRQ: d.IRQ}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Trans.Close() })
	if err := d.Host.AddDevice(Slot, d.Trans); err != nil {
		t.Fatal(err)
	}
	if id := d.Conf32(0); id&0xffff != virtio.PCIVendorID || id>>16 != uint32(virtio.PCIDeviceIDBase+dev.Type()) {
		t.Fatalf("vendor/device %#x, want 1af4/%#x", id, virtio.PCIDeviceIDBase+dev.Type())
	}
	lo, hi := d.Conf32(pci.OffBAR0), d.Conf32(pci.OffBAR0+4)
	d.bar = uint64(lo&^0xf) | uint64(hi)<<32
	if lo&0x6 != 0x4 || d.bar == 0 {
		t.Fatalf("BAR0 %#x %#x is not an assigned 64-bit memory BAR", lo, hi)
	}
	d.SetConf16(pci.OffCommand, pci.CommandMemory|pci.CommandBusMaster)
	d.findCaps()
	return d
}

// Conf32 reads a configuration dword of the device through conf1.
func (d *Driver) Conf32(reg int) uint32 {
	d.Bus.PortOut(0xcf8, le32(0x80000000|Slot<<11|uint32(reg&^3)))
	b := make([]byte, 4)
	d.Bus.PortIn(0xcfc, b)
	return binary.LittleEndian.Uint32(b) >> (8 * (reg & 3))
}

// SetConf16 writes a configuration word.
func (d *Driver) SetConf16(reg int, v uint16) {
	d.Bus.PortOut(0xcf8, le32(0x80000000|Slot<<11|uint32(reg&^3)))
	d.Bus.PortOut(0xcfc+uint16(reg&2), []byte{byte(v), byte(v >> 8)})
}

// SetConf32 writes a configuration dword.
func (d *Driver) SetConf32(reg int, v uint32) {
	d.Bus.PortOut(0xcf8, le32(0x80000000|Slot<<11|uint32(reg)))
	d.Bus.PortOut(0xcfc, le32(v))
}

func (d *Driver) findCaps() {
	found := map[uint8]bool{}
	for off, n := int(d.Conf32(pci.OffCapPtr)&0xff), 0; off != 0; off, n = int(d.Conf32(off)>>8&0xff), n+1 {
		if n > 48 {
			d.T.Fatal("capability list loops")
		}
		id := uint8(d.Conf32(off))
		if id == pci.CapIDMSIX {
			d.msixCap = off
			tbl := d.Conf32(off + 4)
			if tbl&7 != 0 {
				d.T.Fatalf("MSI-X table in BAR %d", tbl&7)
			}
			d.msixTab = d.bar + uint64(tbl&^7)
			continue
		}
		if id != pci.CapIDVendor {
			continue
		}
		typ, bar := uint8(d.Conf32(off+3)), uint8(d.Conf32(off+4))
		offset := uint64(d.Conf32(off + 8))
		if typ != 5 && bar != 0 {
			d.T.Fatalf("virtio cap type %d in BAR %d", typ, bar)
		}
		found[typ] = true
		switch typ {
		case 1:
			d.common = d.bar + offset
		case 2:
			d.notify = d.bar + offset
			d.notifyMul = d.Conf32(off + 16)
		case 3:
			d.isr = d.bar + offset
		case 4:
			d.devcfg = d.bar + offset
		}
	}
	for _, typ := range []uint8{1, 2, 3, 4, 5} {
		if !found[typ] {
			d.T.Fatalf("virtio capability type %d missing", typ)
		}
	}
	if d.msixCap == 0 {
		d.T.Fatal("no MSI-X capability")
	}
}

// BAR returns the address the transport's BAR decodes at.
func (d *Driver) BAR() uint64 { return d.bar }

// Read8/16/32/64 and Write* access the common configuration.
func (d *Driver) read(addr uint64, n int) uint64 {
	b := make([]byte, n)
	d.Bus.MMIORead(addr, b)
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}

func (d *Driver) write(addr uint64, n int, v uint64) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	d.Bus.MMIOWrite(addr, b)
}

// Common reads n bytes of the common configuration at off.
func (d *Driver) Common(off uint64, n int) uint64 { return d.read(d.common+off, n) }

// SetCommon writes the common configuration.
func (d *Driver) SetCommon(off uint64, n int, v uint64) { d.write(d.common+off, n, v) }

// DeviceConfig reads n bytes of device configuration at off.
func (d *Driver) DeviceConfig(off uint64, n int) uint64 { return d.read(d.devcfg+off, n) }

// ReadISR reads (and so clears) the ISR.
func (d *Driver) ReadISR() uint8 { return uint8(d.read(d.isr, 1)) }

// Status reads device_status.
func (d *Driver) Status() uint8 { return uint8(d.Common(0x14, 1)) }

// SetStatus writes device_status.
func (d *Driver) SetStatus(s uint8) { d.SetCommon(0x14, 1, uint64(s)) }

// Reset writes 0 to device_status and waits for it to read 0.
func (d *Driver) Reset() {
	d.SetStatus(0)
	for i := 0; d.Status() != 0; i++ {
		if i > 1000 {
			d.T.Fatal("device_status does not read 0 after reset")
		}
		time.Sleep(time.Millisecond)
	}
}

// DeviceFeatures reads the 64 offered feature bits.
func (d *Driver) DeviceFeatures() uint64 {
	d.SetCommon(0, 4, 0)
	lo := d.Common(4, 4)
	d.SetCommon(0, 4, 1)
	return lo | d.Common(4, 4)<<32
}

// Options choose how Init sets the device up.
type Options struct {
	Features uint64 // wanted (intersected with what is offered); VERSION_1 is always asked
	INTx     bool   // leave MSI-X disabled
	Sizes    []uint16
}

// Init is virtio_pci_modern's probe: reset, ACKNOWLEDGE, DRIVER, features,
// FEATURES_OK (checked), MSI-X vectors (config 0, queue i -> i+1), queues,
// DRIVER_OK.
func (d *Driver) Init(o Options) error {
	d.Reset()
	d.SetStatus(virtio.StatusAcknowledge)
	d.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	d.Features = (d.DeviceFeatures() & o.Features) | virtio.FeatureVersion1
	d.SetCommon(8, 4, 0)
	d.SetCommon(12, 4, d.Features&0xffffffff)
	d.SetCommon(8, 4, 1)
	d.SetCommon(12, 4, d.Features>>32)
	s := uint8(virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK)
	d.SetStatus(s)
	if d.Status()&virtio.StatusFeaturesOK == 0 {
		d.SetStatus(s | virtio.StatusFailed)
		return fmt.Errorf("device refused features %#x", d.Features)
	}
	if !o.INTx {
		d.EnableMSIX()
		d.SetCommon(0x10, 2, 0)
	}
	nq := int(d.Common(0x12, 2))
	d.Queues = nil
	for i := range nq {
		d.SetCommon(0x16, 2, uint64(i))
		size := uint16(d.Common(0x18, 2))
		if i < len(o.Sizes) && o.Sizes[i] != 0 {
			size = o.Sizes[i]
			d.SetCommon(0x18, 2, uint64(size))
		}
		q := d.newQueue(i, size)
		d.SetCommon(0x20, 4, q.Desc)
		d.SetCommon(0x24, 4, q.Desc>>32) // 64-bit fields in two halves, as Linux does
		d.SetCommon(0x28, 8, q.Avail)
		d.SetCommon(0x30, 8, q.Used)
		if !o.INTx {
			d.SetCommon(0x1a, 2, uint64(i+1))
			if got := d.Common(0x1a, 2); got != uint64(i+1) {
				return fmt.Errorf("queue %d MSI-X vector reads %#x", i, got)
			}
		}
		q.NotifyAddr = d.notify + uint64(d.Common(0x1e, 2))*uint64(d.notifyMul)
		d.SetCommon(0x1c, 2, 1)
		d.Queues = append(d.Queues, q)
	}
	d.SetStatus(s | virtio.StatusDriverOK)
	if st := d.Status(); st&virtio.StatusDeviceNeedsReset != 0 {
		return fmt.Errorf("device needs reset after DRIVER_OK (status %#x): %v", st, d.Trans.Err())
	}
	return nil
}

// EnableMSIX programs every table entry (address MSIAddr, data 0x40+i),
// unmasks them and sets the capability's enable bit.
func (d *Driver) EnableMSIX() {
	n := int(d.Conf32(d.msixCap)>>16&0x7ff) + 1
	for i := range n {
		e := d.msixTab + uint64(16*i)
		d.write(e, 8, MSIAddr)
		d.write(e+8, 4, uint64(0x40+i))
		d.write(e+12, 4, 0)
	}
	ctl := uint16(d.Conf32(d.msixCap) >> 16)
	d.SetConf16(d.msixCap+2, ctl|0x8000)
}

// MaskVector sets or clears a table entry's mask bit.
func (d *Driver) MaskVector(v int, masked bool) {
	val := uint64(0)
	if masked {
		val = 1
	}
	d.write(d.msixTab+uint64(16*v)+12, 4, val)
}

// PBA reads the first dword of the pending bit array.
func (d *Driver) PBA() uint32 {
	pba := d.Conf32(d.msixCap + 8)
	return uint32(d.read(d.bar+uint64(pba&^7), 4))
}

// Alloc returns n bytes of guest memory, aligned to 16.
func (d *Driver) Alloc(n int) uint64 {
	a := (d.next + 15) &^ 15
	d.next = a + uint64(n)
	if d.next > MemSize {
		d.T.Fatalf("fake guest memory exhausted")
	}
	return a
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
