package devices_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices"
)

// recorder is a fake device that answers reads with a tag byte and records
// the last access.
type recorder struct {
	tag      byte
	mu       sync.Mutex
	lastPort uint16
	lastAddr uint64
	lastData []byte
	n        atomic.Int64
}

func (r *recorder) PortIn(port uint16, data []byte) {
	r.n.Add(1)
	r.mu.Lock()
	r.lastPort = port
	r.mu.Unlock()
	for i := range data {
		data[i] = r.tag
	}
}

func (r *recorder) PortOut(port uint16, data []byte) {
	r.n.Add(1)
	r.mu.Lock()
	r.lastPort, r.lastData = port, append([]byte(nil), data...)
	r.mu.Unlock()
}

func (r *recorder) MMIORead(addr uint64, data []byte) {
	r.n.Add(1)
	r.mu.Lock()
	r.lastAddr = addr
	r.mu.Unlock()
	for i := range data {
		data[i] = r.tag
	}
}

func (r *recorder) MMIOWrite(addr uint64, data []byte) {
	r.n.Add(1)
	r.mu.Lock()
	r.lastAddr, r.lastData = addr, append([]byte(nil), data...)
	r.mu.Unlock()
}

func TestBusPortDispatch(t *testing.T) {
	b := devices.NewBus()
	a, c := &recorder{tag: 0xa1}, &recorder{tag: 0xc2}
	if err := b.RegisterPort(0x3f8, 8, a); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterPort(0x60, 1, c); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		port uint16
		want byte
	}{
		{0x3f7, 0xff}, {0x3f8, 0xa1}, {0x3ff, 0xa1}, {0x400, 0xff},
		{0x5f, 0xff}, {0x60, 0xc2}, {0x61, 0xff}, {0, 0xff}, {0xffff, 0xff},
	}
	for _, tt := range tests {
		buf := []byte{0, 0}
		b.PortIn(tt.port, buf)
		if buf[0] != tt.want || buf[1] != tt.want {
			t.Errorf("PortIn(%#x) = % x, want %02x %02x", tt.port, buf, tt.want, tt.want)
		}
	}
	b.PortOut(0x3fb, []byte{0x83})
	if a.lastPort != 0x3fb || len(a.lastData) != 1 || a.lastData[0] != 0x83 {
		t.Errorf("PortOut reached port %#x data % x, want 0x3fb 83 (absolute port)", a.lastPort, a.lastData)
	}
	b.PortOut(0x70, []byte{1})
	st := b.Stats()
	if st.UnclaimedPortReads != 6 || st.DroppedPortWrites != 1 || st.LastUnclaimedPort != 0x70 {
		t.Errorf("stats = %+v, want 6 unclaimed reads, 1 dropped write, last port 0x70", st)
	}
}

func TestBusMMIODispatch(t *testing.T) {
	b := devices.NewBus()
	a := &recorder{tag: 0x5a}
	if err := b.RegisterMMIO(0xc0000000, 0x1000, a); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr uint64
		want byte
	}{
		{0xbfffffff, 0xff}, {0xc0000000, 0x5a}, {0xc0000fff, 0x5a}, {0xc0001000, 0xff}, {0, 0xff}, {^uint64(0), 0xff},
	}
	for _, tt := range tests {
		buf := make([]byte, 8)
		b.MMIORead(tt.addr, buf)
		for _, v := range buf {
			if v != tt.want {
				t.Fatalf("MMIORead(%#x) = % x, want all %02x", tt.addr, buf, tt.want)
			}
		}
	}
	b.MMIOWrite(0xc0000010, []byte{1, 2, 3, 4})
	if a.lastAddr != 0xc0000010 || string(a.lastData) != "\x01\x02\x03\x04" {
		t.Errorf("MMIOWrite reached %#x % x", a.lastAddr, a.lastData)
	}
	b.MMIOWrite(0xd0000000, []byte{1})
	if st := b.Stats(); st.UnclaimedMMIOReads != 4 || st.DroppedMMIOWrites != 1 || st.LastUnclaimedMMIO != 0xd0000000 {
		t.Errorf("stats = %+v", st)
	}
}

func TestBusRegisterErrors(t *testing.T) {
	d := &recorder{}
	tests := []struct {
		name string
		port bool
		base uint64
		size uint64
		dev  *recorder
		want error
	}{
		{"port exact overlap", true, 0x3f8, 8, d, devices.ErrOverlap},
		{"port overlaps start", true, 0x3f0, 9, d, devices.ErrOverlap},
		{"port overlaps end", true, 0x3ff, 4, d, devices.ErrOverlap},
		{"port inside", true, 0x3fa, 1, d, devices.ErrOverlap},
		{"port covers", true, 0x300, 0x200, d, devices.ErrOverlap},
		{"port adjacent below", true, 0x3f0, 8, d, nil},
		{"port adjacent above", true, 0x400, 8, d, nil},
		{"port zero size", true, 0x500, 0, d, devices.ErrBadRange},
		{"port wraps", true, 0xfff0, 0x20, d, devices.ErrBadRange},
		{"port last", true, 0xffff, 1, d, nil},
		{"port nil device", true, 0x600, 1, nil, devices.ErrBadRange},
		{"mmio overlap", false, 0xfec00800, 0x1000, d, devices.ErrOverlap},
		{"mmio adjacent", false, 0xfec01000, 0x1000, d, nil},
		{"mmio wraps", false, ^uint64(0) - 10, 100, d, devices.ErrBadRange},
		{"mmio zero", false, 0x1000, 0, d, devices.ErrBadRange},
	}
	b := devices.NewBus()
	if err := b.RegisterPort(0x3f8, 8, d); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterMMIO(0xfec00000, 0x1000, d); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			switch {
			case tt.port && tt.dev == nil:
				err = b.RegisterPort(uint16(tt.base), uint16(tt.size), nil)
			case tt.port:
				err = b.RegisterPort(uint16(tt.base), uint16(tt.size), tt.dev)
			default:
				err = b.RegisterMMIO(tt.base, tt.size, tt.dev)
			}
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBusUnregister(t *testing.T) {
	b := devices.NewBus()
	d := &recorder{tag: 1}
	if err := b.RegisterMMIO(0x1000, 0x100, d); err != nil {
		t.Fatal(err)
	}
	if err := b.UnregisterMMIO(0x1001); !errors.Is(err, devices.ErrNotRegistered) {
		t.Fatalf("unregister at non-base: %v, want ErrNotRegistered", err)
	}
	if err := b.UnregisterMMIO(0x1000); err != nil {
		t.Fatal(err)
	}
	buf := []byte{0}
	b.MMIORead(0x1000, buf)
	if buf[0] != 0xff {
		t.Fatalf("read after unregister = %#x, want 0xff", buf[0])
	}
	if err := b.RegisterMMIO(0x1000, 0x100, d); err != nil {
		t.Fatalf("re-register after unregister: %v", err)
	}
	if err := b.UnregisterPort(0x3f8); !errors.Is(err, devices.ErrNotRegistered) {
		t.Fatalf("unregister port never registered: %v", err)
	}
}

// remapper moves its own registration from inside an access handler, as the
// PCI host does when the guest moves a BAR; the bus must not deadlock.
type remapper struct {
	b    *devices.Bus
	base uint64
}

func (r *remapper) MMIORead(addr uint64, data []byte) {}
func (r *remapper) MMIOWrite(addr uint64, data []byte) {
	if err := r.b.UnregisterMMIO(r.base); err != nil {
		panic(err)
	}
	r.base += 0x1000
	if err := r.b.RegisterMMIO(r.base, 0x1000, r); err != nil {
		panic(err)
	}
}

func TestBusRegisterFromHandler(t *testing.T) {
	b := devices.NewBus()
	r := &remapper{b: b, base: 0x10000}
	if err := b.RegisterMMIO(r.base, 0x1000, r); err != nil {
		t.Fatal(err)
	}
	b.MMIOWrite(0x10000, []byte{1})
	if r.base != 0x11000 {
		t.Fatalf("base = %#x, want 0x11000", r.base)
	}
	b.MMIOWrite(0x10000, []byte{1}) // old range: dropped
	if st := b.Stats(); st.DroppedMMIOWrites != 1 {
		t.Fatalf("write to the old range was not dropped: %+v", st)
	}
}

// TestBusConcurrent runs dispatch on several "vCPUs" while another goroutine
// registers and unregisters a device; run with -race.
func TestBusConcurrent(t *testing.T) {
	b := devices.NewBus()
	fixed := &recorder{tag: 0x11}
	moving := &recorder{tag: 0x22}
	if err := b.RegisterPort(0x100, 0x10, fixed); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterMMIO(0x100000, 0x1000, fixed); err != nil {
		t.Fatal(err)
	}
	const vcpus, iters = 4, 2000
	var wg sync.WaitGroup
	errs := make(chan string, vcpus)
	for v := range vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4)
			for i := range iters {
				b.PortIn(0x100+uint16(i%16), buf)
				if buf[0] != 0x11 {
					errs <- "fixed port device lost"
					return
				}
				b.MMIORead(0x100000+uint64(i%4096), buf)
				if buf[0] != 0x11 {
					errs <- "fixed mmio device lost"
					return
				}
				b.MMIORead(0x200000, buf)
				if buf[0] != 0x22 && buf[0] != 0xff {
					errs <- "moving device read a wrong byte"
					return
				}
				b.PortOut(0x200+uint16(v), buf[:1])
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range iters / 4 {
			if err := b.RegisterMMIO(0x200000, 0x1000, moving); err != nil {
				errs <- err.Error()
				return
			}
			if err := b.UnregisterMMIO(0x200000); err != nil {
				errs <- err.Error()
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if got := fixed.n.Load(); got != 2*vcpus*iters {
		t.Errorf("fixed device saw %d accesses, want %d", got, 2*vcpus*iters)
	}
	if st := b.Stats(); st.DroppedPortWrites != vcpus*iters {
		t.Errorf("dropped port writes = %d, want %d", st.DroppedPortWrites, vcpus*iters)
	}
}

func BenchmarkBusPortIn(b *testing.B) {
	bus := devices.NewBus()
	for i := range 16 {
		if err := bus.RegisterPort(uint16(0x1000+0x10*i), 8, &recorder{tag: byte(i)}); err != nil {
			b.Fatal(err)
		}
	}
	buf := make([]byte, 1)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bus.PortIn(uint16(0x1000+0x10*(i%16)), buf)
	}
}
