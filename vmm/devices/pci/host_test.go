package pci

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices"
	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

const fakeSlot = 3

// TestLinuxEnumeration walks the bus the way Linux does: the conf1 check,
// vendor IDs of all 32 slots, header and class, BAR sizing with decoding
// off, the capability list, then enabling decoding and using the BARs.
func TestLinuxEnumeration(t *testing.T) {
	h, bus, c := newHost(t)
	ep := newFakeEndpoint(t, 0x1042)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}

	// pci_check_type1.
	dt.Out8(bus, 0xcfb, 0x01)
	saved := dt.In32(bus, 0xcf8)
	dt.Out32(bus, 0xcf8, 0x80000000)
	if v := dt.In32(bus, 0xcf8); v != 0x80000000 {
		t.Fatalf("address register reads %#x, want 0x80000000", v)
	}
	dt.Out32(bus, 0xcf8, saved)

	// Scan.
	var present []int
	for dev := range NumSlots {
		if v := c.read(dev, OffVendorID, 2); v != 0xffff {
			present = append(present, dev)
		}
		c.addr(0, dev, 1, 0) // function 1 never exists
		if v := dt.In32(bus, 0xcfc); v != 0xffffffff {
			t.Fatalf("%02x.1 reads %#x, want absent", dev, v)
		}
	}
	if len(present) != 2 || present[0] != 0 || present[1] != fakeSlot {
		t.Fatalf("present slots %v, want [0 %d]", present, fakeSlot)
	}
	if id := c.read(0, OffVendorID, 4); id != HostBridgeDeviceID<<16|HostBridgeVendorID {
		t.Fatalf("host bridge id %#x", id)
	}
	if class := c.read(0, OffRevision, 4) >> 8; class != HostBridgeClassCode {
		t.Fatalf("host bridge class %#x", class)
	}
	if ht := c.read(fakeSlot, OffHeaderType, 1); ht != 0 {
		t.Fatalf("header type %#x, want 0 (single-function endpoint)", ht)
	}
	if class := c.read(fakeSlot, OffRevision, 4); class != 0x01800001 {
		t.Fatalf("class/revision %#x", class)
	}

	// Size BARs with decoding off (__pci_read_base).
	cmd := c.read(fakeSlot, OffCommand, 2)
	c.write(fakeSlot, OffCommand, 2, cmd&^(CommandIO|CommandMemory))
	type sized struct {
		addr, size uint64
		io, is64   bool
	}
	var bars []sized
	for i := 0; i < NumBARs; i++ {
		reg := OffBAR0 + 4*i
		l := c.read(fakeSlot, reg, 4)
		c.write(fakeSlot, reg, 4, 0xffffffff)
		sz := c.read(fakeSlot, reg, 4)
		c.write(fakeSlot, reg, 4, l)
		if sz == 0 {
			continue
		}
		if sz&barIOSpace != 0 {
			mask := sz & 0xfffc & 0xffff
			bars = append(bars, sized{addr: uint64(l &^ 3), size: uint64(mask & -mask), io: true})
			continue
		}
		mask := uint64(sz &^ 0xf)
		addr := uint64(l &^ 0xf)
		is64 := sz&barMemType64 != 0
		if is64 {
			i++
			hreg := OffBAR0 + 4*i
			hl := c.read(fakeSlot, hreg, 4)
			c.write(fakeSlot, hreg, 4, 0xffffffff)
			hsz := c.read(fakeSlot, hreg, 4)
			c.write(fakeSlot, hreg, 4, hl)
			mask |= uint64(hsz) << 32
			addr |= uint64(hl) << 32
		} else {
			mask |= 0xffffffff00000000
		}
		bars = append(bars, sized{addr: addr, size: mask & -mask, is64: is64})
	}
	want := []sized{{size: 0x4000, is64: true}, {size: 0x1000}, {size: 0x20, io: true}}
	if len(bars) != len(want) {
		t.Fatalf("sized %d BARs (%+v), want %d", len(bars), bars, len(want))
	}
	for i, b := range bars {
		if b.size != want[i].size || b.io != want[i].io || b.is64 != want[i].is64 {
			t.Errorf("BAR %d: %+v, want size %#x io %v 64 %v", i, b, want[i].size, want[i].io, want[i].is64)
		}
		if b.addr%b.size != 0 {
			t.Errorf("BAR %d at %#x is not aligned to %#x", i, b.addr, b.size)
		}
		if b.io && (b.addr < DefaultIOBase || b.addr+b.size > DefaultIOBase+DefaultIOSize) {
			t.Errorf("I/O BAR at %#x outside the I/O window", b.addr)
		}
		if !b.io && (b.addr < DefaultMMIOBase || b.addr+b.size > DefaultMMIOBase+DefaultMMIOSize) {
			t.Errorf("memory BAR at %#x outside the MMIO window", b.addr)
		}
	}
	if bars[0].addr == bars[1].addr {
		t.Fatal("two BARs share an address")
	}
	// Nothing is decoded yet.
	buf := make([]byte, 4)
	bus.MMIORead(bars[0].addr, buf)
	if buf[0] != 0xff {
		t.Fatal("BAR decoded before the guest enabled memory space")
	}

	// Capability list.
	if st := c.read(fakeSlot, OffStatus, 2); st&StatusCapList == 0 {
		t.Fatalf("status %#x lacks the capability list bit", st)
	}
	var caps []uint32
	for off, n := c.read(fakeSlot, OffCapPtr, 1), 0; off != 0; off, n = c.read(fakeSlot, int(off)+1, 1), n+1 {
		if n > 48 {
			t.Fatal("capability list loops")
		}
		caps = append(caps, c.read(fakeSlot, int(off), 1))
	}
	if len(caps) != 2 || caps[0] != CapIDVendor || caps[1] != CapIDMSIX {
		t.Fatalf("capabilities %x, want [9 11]", caps)
	}

	// Interrupt routing.
	if pin, line := c.read(fakeSlot, OffInterruptPin, 1), c.read(fakeSlot, OffInterruptLine, 1); pin != 1 || line != INTxGSI(fakeSlot, 1) {
		t.Fatalf("pin %d line %d, want 1 and %d", pin, line, INTxGSI(fakeSlot, 1))
	}

	if e := ep.events(); e != nil {
		t.Fatalf("BAR events before decoding was enabled: %v", e)
	}
	// pci_enable_device + bus master, then use the BARs.
	c.write(fakeSlot, OffCommand, 2, cmd|CommandIO|CommandMemory|CommandBusMaster)
	wantEvents := []string{
		fmt.Sprintf("map 0 %#x false", bars[0].addr),
		fmt.Sprintf("map 2 %#x false", bars[1].addr),
		fmt.Sprintf("map 4 %#x true", bars[2].addr),
	}
	if e := ep.events(); !reflect.DeepEqual(e, wantEvents) {
		t.Fatalf("BAR events on enable %q, want %q", e, wantEvents)
	}
	bus.MMIORead(bars[0].addr+0x12, buf)
	if buf[0] != 0x02 || buf[1] != 0x03 {
		t.Fatalf("BAR 0 read % x, want 02 03 ... (bar 0, offset 0x12)", buf)
	}
	bus.MMIOWrite(bars[1].addr+0x800, []byte{7})
	if w := ep.lastWrite(); w.bar != 2 || w.offset != 0x800 || w.data[0] != 7 {
		t.Fatalf("BAR 2 write arrived as %+v", w)
	}
	dt.Out16(bus, uint16(bars[2].addr+4), 0xbeef)
	if w := ep.lastWrite(); w.bar != 4 || w.offset != 4 || len(w.data) != 2 {
		t.Fatalf("I/O BAR write arrived as %+v", w)
	}
	if st := h.Stats(); st.MapErrors != 0 {
		t.Fatalf("map errors: %v", st.LastMapErr)
	}

	// Move BAR 2 while decoding (the kernel reassigning it).
	newAddr := uint64(0xd0000000)
	c.write(fakeSlot, OffBAR0+8, 4, uint32(newAddr))
	bus.MMIOWrite(bars[1].addr, []byte{1})
	if w := ep.lastWrite(); w.bar == 2 && w.offset == 0 {
		t.Fatal("old BAR 2 address still decoded after the move")
	}
	wantEvents = []string{fmt.Sprintf("unmap 2 %#x false", bars[1].addr), fmt.Sprintf("map 2 %#x false", newAddr)}
	if e := ep.events(); !reflect.DeepEqual(e, wantEvents) {
		t.Fatalf("BAR events on move %q, want %q", e, wantEvents)
	}
	bus.MMIOWrite(newAddr+0x10, []byte{9})
	if w := ep.lastWrite(); w.bar != 2 || w.offset != 0x10 {
		t.Fatalf("moved BAR 2 write arrived as %+v", w)
	}

	// Disable memory decoding: every memory BAR disappears, I/O stays.
	c.write(fakeSlot, OffCommand, 2, CommandIO)
	for _, a := range []uint64{bars[0].addr, newAddr} {
		bus.MMIORead(a, buf)
		if buf[0] != 0xff {
			t.Fatalf("memory BAR at %#x still decoded with memory space off", a)
		}
	}
	if v := dt.In8(bus, uint16(bars[2].addr)); v != 0x40 {
		t.Fatalf("I/O BAR read %#x, want 0x40 (bar 4, offset 0)", v)
	}
	c.write(fakeSlot, OffCommand, 2, 0)
	if v := dt.In8(bus, uint16(bars[2].addr)); v != 0xff {
		t.Fatal("I/O BAR decoded with I/O space off")
	}
}

func TestConfigAccessWidths(t *testing.T) {
	h, bus, c := newHost(t)
	ep := newFakeEndpoint(t, 0x1042)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		reg, size int
		want      uint32
	}{
		{"vendor low byte", 0, 1, 0xf4},
		{"vendor high byte", 1, 1, 0x1a},
		{"device id word at lane 2", 2, 2, 0x1042},
		{"class byte at lane 3", 0x0b, 1, 0x01},
		{"subsystem dword", 0x2c, 4, 0x00401af4},
		{"expansion ROM unimplemented", OffExpansionROM, 4, 0},
	}
	for _, tt := range tests {
		if got := c.read(fakeSlot, tt.reg, tt.size); got != tt.want {
			t.Errorf("%s: read%d(%#x) = %#x, want %#x", tt.name, tt.size*8, tt.reg, got, tt.want)
		}
	}
	// A word access crossing the data dword is not decoded.
	c.addr(0, fakeSlot, 0, 0)
	if v := dt.In16(bus, 0xcff); v != 0xffff {
		t.Errorf("word read at 0xcff = %#x, want 0xffff", v)
	}
	// Enable bit clear, and bus 1: nothing answers.
	dt.Out32(bus, 0xcf8, uint32(fakeSlot)<<11)
	if v := dt.In32(bus, 0xcfc); v != 0xffffffff {
		t.Errorf("read with enable clear = %#x", v)
	}
	c.addr(1, fakeSlot, 0, 0)
	if v := dt.In32(bus, 0xcfc); v != 0xffffffff {
		t.Errorf("read on bus 1 = %#x", v)
	}
	// Reserved address bits do not stick; non-dword address accesses are ignored.
	dt.Out32(bus, 0xcf8, 0xffffffff)
	if v := dt.In32(bus, 0xcf8); v != addrKeep {
		t.Errorf("address register = %#x, want %#x", v, uint32(addrKeep))
	}
	if v := dt.In8(bus, 0xcf8); v != 0xff {
		t.Errorf("byte read of 0xcf8 = %#x", v)
	}
	// Read-only fields ignore writes; the interrupt line is writable.
	c.write(fakeSlot, OffVendorID, 4, 0)
	c.write(fakeSlot, OffInterruptLine, 1, 0x0b)
	c.write(fakeSlot, OffInterruptPin, 1, 4)
	if v := c.read(fakeSlot, OffVendorID, 2); v != 0x1af4 {
		t.Errorf("vendor id writable: %#x", v)
	}
	if l, p := c.read(fakeSlot, OffInterruptLine, 1), c.read(fakeSlot, OffInterruptPin, 1); l != 0x0b || p != 1 {
		t.Errorf("line %#x pin %d", l, p)
	}
	// Status error bits are write-one-to-clear; the capability bit is not.
	ep.cfg.SetUint16(OffStatus, ep.cfg.Uint16(OffStatus)|0x8000|StatusINTx)
	c.write(fakeSlot, OffStatus, 2, 0xffff)
	if st := c.read(fakeSlot, OffStatus, 2); st != StatusCapList|StatusINTx {
		t.Errorf("status after clearing = %#x, want %#x", st, StatusCapList|StatusINTx)
	}
	// Interceptor hooks see writes and may rewrite reads.
	msixCtl := ep.msixCap + 2
	c.write(fakeSlot, msixCtl, 2, 0xc000|0x7ff)
	if v := ep.cfg.Uint16(msixCtl); v != 0xc001 {
		t.Errorf("MSI-X control = %#x, want 0xc001 (enable+mask writable, table size read-only)", v)
	}
	ep.mu.Lock()
	sawWrite := len(ep.cfgWrites) > 0 && ep.cfgWrites[len(ep.cfgWrites)-1] == msixCtl
	ep.cfgReadHook = true
	ep.mu.Unlock()
	if !sawWrite {
		t.Error("ConfigWrite hook not called for the MSI-X control write")
	}
	if v := c.read(fakeSlot, OffSubsysID, 1); v != 0x99 {
		t.Errorf("ConfigRead hook ignored: %#x", v)
	}
}

func TestAddDeviceErrors(t *testing.T) {
	h, _, _ := newHost(t)
	ep := newFakeEndpoint(t, 1)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		slot int
		dev  Device
		want error
	}{
		{"slot 0 is the host bridge", 0, newFakeEndpoint(t, 2), ErrBadSlot},
		{"slot 32", 32, newFakeEndpoint(t, 2), ErrBadSlot},
		{"slot in use", fakeSlot, newFakeEndpoint(t, 2), ErrSlotInUse},
		{"same function twice", fakeSlot + 1, ep, ErrAlreadyUsed},
	}
	for _, tt := range tests {
		if err := h.AddDevice(tt.slot, tt.dev); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if err := ep.cfg.SetBAR(5, BAR{Kind: BARMem32, Size: 0x1000}); !errors.Is(err, ErrAlreadyUsed) {
		t.Errorf("SetBAR after attach: %v", err)
	}
	if _, err := ep.cfg.AddCapability(CapIDMSI, []byte{0, 0}, nil); !errors.Is(err, ErrAlreadyUsed) {
		t.Errorf("AddCapability after attach: %v", err)
	}
	if s, err := h.FreeSlot(); err != nil || s != 1 {
		t.Errorf("FreeSlot = %d, %v, want 1", s, err)
	}
}

func TestWindowExhaustion(t *testing.T) {
	bus := devices.NewBus()
	cfg := DefaultConfig(bus)
	cfg.MMIOSize = 0x8000
	h, err := NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddDevice(1, newFakeEndpoint(t, 1)); err != nil { // 0x4000 + 0x1000
		t.Fatal(err)
	}
	ep := newFakeEndpoint(t, 2)
	if err := h.AddDevice(2, ep); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("second device in a full window: %v, want ErrNoSpace", err)
	}
	if err := h.AddDevice(2, newSmallEndpoint(t)); err != nil {
		t.Fatalf("a failed AddDevice leaked window space: %v", err)
	}
}

func newSmallEndpoint(t *testing.T) *fakeEndpoint {
	cfg, err := NewConfigSpace(Header{VendorID: 0x1af4, DeviceID: 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetBAR(0, BAR{Kind: BARMem32, Size: 0x2000}); err != nil {
		t.Fatal(err)
	}
	return &fakeEndpoint{cfg: cfg}
}

func TestNewHostErrors(t *testing.T) {
	bus := devices.NewBus()
	bad := []Config{
		{},
		{Bus: bus, MMIOBase: 0xc0000000},
		{Bus: bus, MMIOBase: 0xc0000100, MMIOSize: 0x1000},
		{Bus: bus, MMIOBase: 0xc0000000, MMIOSize: 0x1000, IOBase: 0xf000, IOSize: 0x2000},
	}
	for _, cfg := range bad {
		if _, err := NewHost(cfg); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewHost(%+v) = %v, want ErrBadConfig", cfg, err)
		}
	}
	if _, err := NewHost(DefaultConfig(bus)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHost(DefaultConfig(bus)); !errors.Is(err, devices.ErrOverlap) {
		t.Errorf("second host on the same ports: %v, want ErrOverlap", err)
	}
}

// TestBAROverlapCounted: a guest that programs a BAR over another device's
// range gets no decoding there, and the error is counted, not fatal.
func TestBAROverlapCounted(t *testing.T) {
	h, bus, c := newHost(t)
	if err := bus.RegisterMMIO(0xfec00000, 0x1000, nopMMIO{}); err != nil {
		t.Fatal(err)
	}
	ep := newFakeEndpoint(t, 1)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	c.write(fakeSlot, OffBAR0+8, 4, 0xfec00000)
	c.write(fakeSlot, OffCommand, 2, CommandMemory)
	st := h.Stats()
	if st.MapErrors != 1 || !errors.Is(st.LastMapErr, devices.ErrOverlap) {
		t.Fatalf("stats %+v", st)
	}
	// Moving it somewhere free maps it.
	c.write(fakeSlot, OffBAR0+8, 4, 0xd0000000)
	bus.MMIOWrite(0xd0000000, []byte{1})
	if w := ep.lastWrite(); w.bar != 2 {
		t.Fatalf("BAR 2 not decoded after moving off the conflict: %+v", w)
	}
}

type nopMMIO struct{}

func (nopMMIO) MMIORead(uint64, []byte)  {}
func (nopMMIO) MMIOWrite(uint64, []byte) {}

func TestINTxGSI(t *testing.T) {
	tests := []struct {
		slot int
		pin  uint8
		want uint32
	}{
		{0, 1, 16}, {1, 1, 17}, {1, 4, 20}, {7, 1, 23}, {7, 2, 16}, {8, 1, 16}, {31, 4, 18},
	}
	for _, tt := range tests {
		if got := INTxGSI(tt.slot, tt.pin); got != tt.want {
			t.Errorf("INTxGSI(%d, %d) = %d, want %d", tt.slot, tt.pin, got, tt.want)
		}
	}
}

// TestConcurrentConfigAndBAR: one vCPU toggles memory decoding through
// configuration cycles while others access the BAR (run with -race): every
// read sees either the device or an unclaimed 0xff, never a wrong device.
func TestConcurrentConfigAndBAR(t *testing.T) {
	h, bus, c := newHost(t)
	ep := newFakeEndpoint(t, 1)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	addr, _ := ep.cfg.BARAddress(2)
	var wg sync.WaitGroup
	bad := make(chan byte, 4)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			for range 2000 {
				bus.MMIORead(addr+1, buf)
				if buf[0] != 0x21 && buf[0] != 0xff {
					bad <- buf[0]
					return
				}
			}
		}()
	}
	for i := range 400 {
		c.write(fakeSlot, OffCommand, 2, uint32(i%2)*CommandMemory)
	}
	wg.Wait()
	close(bad)
	for b := range bad {
		t.Errorf("BAR read %#x, want 0x21 or 0xff", b)
	}
	if st := h.Stats(); st.MapErrors != 0 {
		t.Fatalf("map errors while toggling: %v", st.LastMapErr)
	}
}

// BenchmarkConfigRead is one Linux-style configuration read: address write
// plus data read through the bus.
func BenchmarkConfigRead(b *testing.B) {
	h, bus, _ := newHost(b)
	if err := h.AddDevice(fakeSlot, newFakeEndpoint(b, 1)); err != nil {
		b.Fatal(err)
	}
	addr := []byte{0x00, fakeSlot << 3, 0, 0x80}
	data := make([]byte, 4)
	for b.Loop() {
		bus.PortOut(DefaultConfigPort, addr)
		bus.PortIn(DefaultConfigPort+4, data)
	}
}
