package pci

import (
	"errors"
	"testing"
)

func TestNewConfigSpaceRejects(t *testing.T) {
	for _, h := range []Header{
		{VendorID: 0xffff},
		{VendorID: 0},
		{VendorID: 1, InterruptPin: 5},
		{VendorID: 1, ClassCode: 0x1000000},
	} {
		if _, err := NewConfigSpace(h); !errors.Is(err, ErrBadConfig) {
			t.Errorf("NewConfigSpace(%+v) = %v, want ErrBadConfig", h, err)
		}
	}
}

func TestSetBAR(t *testing.T) {
	tests := []struct {
		name  string
		prior map[int]BAR
		i     int
		bar   BAR
		ok    bool
	}{
		{"mem32 4K", nil, 0, BAR{Kind: BARMem32, Size: 0x1000}, true},
		{"mem64 at 4", nil, 4, BAR{Kind: BARMem64, Size: 0x1000}, true},
		{"mem64 at 5", nil, 5, BAR{Kind: BARMem64, Size: 0x1000}, false},
		{"index 6", nil, 6, BAR{Kind: BARMem32, Size: 0x1000}, false},
		{"negative index", nil, -1, BAR{Kind: BARMem32, Size: 0x1000}, false},
		{"size not power of two", nil, 0, BAR{Kind: BARMem32, Size: 0x1800}, false},
		{"size zero", nil, 0, BAR{Kind: BARMem32}, false},
		{"mem too small", nil, 0, BAR{Kind: BARMem32, Size: 8}, false},
		{"mem32 4 GiB", nil, 0, BAR{Kind: BARMem32, Size: 1 << 32}, false},
		{"io 256", nil, 0, BAR{Kind: BARIO, Size: 256}, true},
		{"io 512", nil, 0, BAR{Kind: BARIO, Size: 512}, false},
		{"io prefetchable", nil, 0, BAR{Kind: BARIO, Size: 16, Prefetchable: true}, false},
		{"kind none", nil, 0, BAR{Size: 16}, false},
		{"twice", map[int]BAR{1: {Kind: BARMem32, Size: 16}}, 1, BAR{Kind: BARMem32, Size: 16}, false},
		{"upper half of mem64", map[int]BAR{0: {Kind: BARMem64, Size: 16}}, 1, BAR{Kind: BARMem32, Size: 16}, false},
		{"mem64 over a declared BAR", map[int]BAR{3: {Kind: BARIO, Size: 16}}, 2, BAR{Kind: BARMem64, Size: 16}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewConfigSpace(Header{VendorID: 1})
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range tt.prior {
				if err := c.SetBAR(i, b); err != nil {
					t.Fatal(err)
				}
			}
			err = c.SetBAR(tt.i, tt.bar)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadBAR) {
				t.Fatalf("SetBAR = %v, want ok=%v (or ErrBadBAR)", err, tt.ok)
			}
		})
	}
}

// TestBARSizingMasks checks what the guest reads back after writing all
// ones, register by register.
func TestBARSizingMasks(t *testing.T) {
	c, err := NewConfigSpace(Header{VendorID: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range map[int]BAR{
		0: {Kind: BARMem32, Size: 0x1000},
		1: {Kind: BARMem64, Size: 0x2_0000_0000, Prefetchable: true},
		3: {Kind: BARIO, Size: 0x40},
	} {
		if err := c.SetBAR(i, b); err != nil {
			t.Fatal(err)
		}
	}
	want := []uint32{0xfffff000, 0x0000000c, 0xfffffffe, 0x0000ffc1, 0, 0}
	for i, w := range want {
		c.Write(OffBAR0+4*i, []byte{0xff, 0xff, 0xff, 0xff})
		if got := c.Uint32(OffBAR0 + 4*i); got != w {
			t.Errorf("BAR %d after all-ones = %#08x, want %#08x", i, got, w)
		}
	}
	if a, ok := c.BARAddress(1); !ok || a != 0xfffffffe_00000000 {
		t.Errorf("64-bit BAR address %#x %v", a, ok)
	}
	if _, ok := c.BARAddress(2); ok {
		t.Error("upper half of a 64-bit BAR reported as a BAR")
	}
}

func TestAddCapability(t *testing.T) {
	c, err := NewConfigSpace(Header{VendorID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCapability(CapIDVendor, []byte{1, 2}, []byte{1}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("mask length mismatch: %v", err)
	}
	offs := []int{}
	for {
		off, err := c.AddCapability(CapIDVendor, make([]byte, 14), nil)
		if errors.Is(err, ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
	}
	// 0x40..0xff in 16-byte capabilities: 12 of them.
	if len(offs) != 12 || offs[0] != CapStart || offs[11] != 0xf0 {
		t.Fatalf("capability offsets %x", offs)
	}
	for i, off := range offs {
		next := 0
		if i+1 < len(offs) {
			next = offs[i+1]
		}
		if got := int(c.Uint8(off + 1)); got != next {
			t.Fatalf("capability at %#x: next %#x, want %#x", off, got, next)
		}
	}
	// Unaligned bodies still start each capability on a dword.
	c2, _ := NewConfigSpace(Header{VendorID: 1})
	a, _ := c2.AddCapability(CapIDMSI, make([]byte, 3), nil)
	b, _ := c2.AddCapability(CapIDMSI, make([]byte, 3), nil)
	if a != 0x40 || b != 0x48 {
		t.Fatalf("offsets %#x %#x, want 0x40 0x48", a, b)
	}
}

func TestConfigWriteMasks(t *testing.T) {
	c, err := NewConfigSpace(Header{VendorID: 0x1234, DeviceID: 0x5678})
	if err != nil {
		t.Fatal(err)
	}
	c.Write(0, []byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	if v := c.Uint32(0); v != 0x56781234 {
		t.Errorf("ids = %#x", v)
	}
	if v := c.Command(); v != commandWritable {
		t.Errorf("command = %#x, want %#x", v, commandWritable)
	}
	if c.INTxEnabled() {
		t.Error("INTx enabled with the disable bit set")
	}
	c.SetINTxStatus(true)
	if v := c.Uint16(OffStatus); v != StatusINTx {
		t.Errorf("status %#x", v)
	}
	var buf [4]byte
	c.Read(ConfigSize-2, buf[:]) // past the end reads zero, no panic
	c.Write(ConfigSize-1, []byte{1, 2, 3})
	c.Write(-1, []byte{1, 2})
}

func TestHostSaveRestore(t *testing.T) {
	h, bus, c := newHost(t)
	ep := newFakeEndpoint(t, 0x1042)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	c.write(fakeSlot, OffBAR0+8, 4, 0xd0000000)
	c.write(fakeSlot, OffCommand, 2, CommandMemory|CommandBusMaster)
	c.write(fakeSlot, ep.msixCap+2, 2, 0x8000)
	c.addr(0, fakeSlot, 0, OffSubsysVendor)
	saved := h.Save()
	if len(saved.Functions) != 2 || saved.Functions[1].Slot != fakeSlot {
		t.Fatalf("saved functions %+v", saved.Functions)
	}

	h2, bus2, _ := newHost(t)
	ep2 := newFakeEndpoint(t, 0x1042)
	if err := h2.AddDevice(fakeSlot, ep2); err != nil {
		t.Fatal(err)
	}
	if err := h2.Restore(saved); err != nil {
		t.Fatal(err)
	}
	again := h2.Save()
	if again.Address != saved.Address || len(again.Functions) != len(saved.Functions) {
		t.Fatalf("round trip %+v", again)
	}
	for i := range saved.Functions {
		if again.Functions[i] != saved.Functions[i] {
			t.Fatalf("function %d differs after round trip", i)
		}
	}
	// The restored bus decodes the moved BAR, and the address register
	// still points where the guest left it.
	bus2.MMIOWrite(0xd0000004, []byte{5})
	if w := ep2.lastWrite(); w.bar != 2 || w.offset != 4 {
		t.Fatalf("restored BAR 2 write arrived as %+v", w)
	}
	if v, w := dtIn32(bus, 0xcfc), dtIn32(bus2, 0xcfc); v != w || v != 0x00401af4 {
		t.Fatalf("data port after restore %#x vs %#x", w, v)
	}
	if ep2.cfg.Uint16(ep2.msixCap+2)&0x8000 == 0 {
		t.Fatal("MSI-X enable lost")
	}
}

func TestHostRestoreRejects(t *testing.T) {
	h, _, c := newHost(t)
	ep := newFakeEndpoint(t, 0x1042)
	if err := h.AddDevice(fakeSlot, ep); err != nil {
		t.Fatal(err)
	}
	c.write(fakeSlot, OffCommand, 2, CommandMemory)
	good := h.Save()
	tests := []struct {
		name string
		mod  func(*State)
	}{
		{"device id differs", func(s *State) { s.Functions[1].Config.Data[OffDeviceID] ^= 1 }},
		{"class differs", func(s *State) { s.Functions[1].Config.Data[OffClassCode+2] = 2 }},
		{"BAR type differs", func(s *State) { s.Functions[1].Config.Data[OffBAR0] ^= barMemType64 }},
		{"capability id differs", func(s *State) { s.Functions[1].Config.Data[ep.msixCap] = CapIDMSI }},
		{"slot has no device", func(s *State) { s.Functions[1].Slot = 9 }},
		{"slot out of range", func(s *State) { s.Functions[1].Slot = 40 }},
		{"device missing", func(s *State) { s.Functions = s.Functions[:1] }},
		{"slot twice", func(s *State) { s.Functions = append(s.Functions, s.Functions[1]) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := State{Address: good.Address, Functions: append([]FunctionState(nil), good.Functions...)}
			tt.mod(&st)
			c.write(fakeSlot, OffCommand, 2, CommandMemory)
			if err := h.Restore(st); !errors.Is(err, ErrBadState) {
				t.Fatalf("Restore = %v, want ErrBadState", err)
			}
			after := h.Save()
			for i := range good.Functions {
				if after.Functions[i] != good.Functions[i] {
					t.Fatalf("refused Restore changed function %d", i)
				}
			}
		})
	}
}
