package pci

import (
	"fmt"
	"sync"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices"
	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

// fakeEndpoint is a virtio-like function: a 64-bit memory BAR, a 32-bit
// memory BAR, an I/O BAR, INTA#, a vendor capability and an MSI-X
// capability. It records BAR accesses and configuration writes.
type fakeEndpoint struct {
	cfg     *ConfigSpace
	vendCap int
	msixCap int

	mu          sync.Mutex
	reads       []barAccess
	writes      []barAccess
	cfgWrites   []int
	cfgReadHook bool
	barEvents   []string
}

func (f *fakeEndpoint) BARMapped(bar int, addr uint64, io bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barEvents = append(f.barEvents, fmt.Sprintf("map %d %#x %v", bar, addr, io))
}

func (f *fakeEndpoint) BARUnmapped(bar int, addr uint64, io bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barEvents = append(f.barEvents, fmt.Sprintf("unmap %d %#x %v", bar, addr, io))
}

func (f *fakeEndpoint) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.barEvents
	f.barEvents = nil
	return e
}

type barAccess struct {
	bar    int
	offset uint64
	data   []byte
}

func newFakeEndpoint(t testing.TB, deviceID uint16) *fakeEndpoint {
	t.Helper()
	cfg, err := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: deviceID, ClassCode: 0x018000, Revision: 1,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x40, InterruptPin: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range map[int]BAR{0: {Kind: BARMem64, Size: 0x4000, Prefetchable: true}, 2: {Kind: BARMem32, Size: 0x1000}, 4: {Kind: BARIO, Size: 0x20}} {
		if err := cfg.SetBAR(i, b); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeEndpoint{cfg: cfg}
	// virtio_pci_cap: cap_len, cfg_type, bar, id, pad[2], offset, length.
	if f.vendCap, err = cfg.AddCapability(CapIDVendor, []byte{16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0}, nil); err != nil {
		t.Fatal(err)
	}
	// MSI-X: message control (table size 2 -> 1), table and PBA in BAR 2.
	if f.msixCap, err = cfg.AddCapability(CapIDMSIX, []byte{1, 0, 2, 0, 0, 0, 2, 8, 0, 0}, []byte{0, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeEndpoint) Config() *ConfigSpace { return f.cfg }

func (f *fakeEndpoint) BARRead(bar int, offset uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads = append(f.reads, barAccess{bar, offset, nil})
	for i := range data {
		data[i] = byte(bar<<4) | byte(offset+uint64(i))&0xf
	}
}

func (f *fakeEndpoint) BARWrite(bar int, offset uint64, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes = append(f.writes, barAccess{bar, offset, append([]byte(nil), data...)})
}

func (f *fakeEndpoint) ConfigRead(offset int, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfgReadHook && offset == OffSubsysID {
		data[0] = 0x99 // a device may replace what the guest reads
	}
}

func (f *fakeEndpoint) ConfigWrite(offset int, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfgWrites = append(f.cfgWrites, offset)
}

func (f *fakeEndpoint) lastWrite() barAccess {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.writes) == 0 {
		return barAccess{bar: -1}
	}
	return f.writes[len(f.writes)-1]
}

// conf1 is the guest side of configuration mechanism #1, as Linux's
// pci_conf1_read/write do it.
type conf1 struct{ bus *devices.Bus }

func (c conf1) addr(bus, dev, fn, reg int) {
	dt.Out32(c.bus, DefaultConfigPort, 0x80000000|uint32(bus)<<16|uint32(dev)<<11|uint32(fn)<<8|uint32(reg&0xfc))
}

func (c conf1) read(dev, reg, size int) uint32 {
	c.addr(0, dev, 0, reg)
	port := uint16(DefaultConfigPort + 4 + reg&3)
	switch size {
	case 1:
		return uint32(dt.In8(c.bus, port))
	case 2:
		return uint32(dt.In16(c.bus, port))
	}
	return dt.In32(c.bus, port)
}

func (c conf1) write(dev, reg, size int, v uint32) {
	c.addr(0, dev, 0, reg)
	port := uint16(DefaultConfigPort + 4 + reg&3)
	switch size {
	case 1:
		dt.Out8(c.bus, port, uint8(v))
	case 2:
		dt.Out16(c.bus, port, uint16(v))
	default:
		dt.Out32(c.bus, port, v)
	}
}

func newHost(t testing.TB) (*Host, *devices.Bus, conf1) {
	t.Helper()
	bus := devices.NewBus()
	h, err := NewHost(DefaultConfig(bus))
	if err != nil {
		t.Fatal(err)
	}
	return h, bus, conf1{bus}
}
