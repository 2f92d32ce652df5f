package pci

import (
	"fmt"
	"sort"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// Configuration mechanism #1 and the default resource windows.
const (
	DefaultConfigPort = 0xcf8 // address register; data at +4..+7
	ConfigPorts       = 8

	addrEnable   = 0x80000000
	addrBusShift = 16
	addrDevShift = 11
	addrFnShift  = 8
	addrRegMask  = 0xfc
	addrKeep     = 0x80fffffc // bits of the address register that hold data

	NumSlots = 32

	DefaultMMIOBase = 0xc0000000
	DefaultMMIOSize = 0xfc000000 - DefaultMMIOBase // up to 0xFBFFFFFF
	DefaultIOBase   = 0xc000
	DefaultIOSize   = 0x4000 // up to 0xFFFF

	mmioAlign = 4096 // memory BARs are page aligned at least
)

// Config places the host bridge and its resource windows.
type Config struct {
	Bus                *devices.Bus // where conf1 ports and BAR ranges are registered
	ConfigPort         uint16       // address register port (DefaultConfigPort)
	MMIOBase, MMIOSize uint64       // window BAR addresses are assigned from
	IOBase, IOSize     uint32       // window I/O BARs are assigned from
}

// DefaultConfig returns smolvm's fixed layout on bus.
func DefaultConfig(bus *devices.Bus) Config {
	return Config{Bus: bus, ConfigPort: DefaultConfigPort,
		MMIOBase: DefaultMMIOBase, MMIOSize: DefaultMMIOSize, IOBase: DefaultIOBase, IOSize: DefaultIOSize}
}

// Stats counts problems the host bridge met.
type Stats struct {
	MapErrors  uint64 // BAR ranges the guest enabled that could not be registered
	LastMapErr error
}

// mapping is a BAR range registered on the bus.
type mapping struct {
	active     bool
	io         bool
	base, size uint64
}

type function struct {
	slot int
	dev  Device
	cfg  *ConfigSpace
	maps [NumBARs]mapping
}

// Host is PCI bus 0 behind configuration mechanism #1, with the host bridge
// at 00:00.0. It is a devices.PortDevice for the conf1 ports.
type Host struct {
	cfg Config

	mu       sync.Mutex
	addr     uint32
	slots    [NumSlots]*function
	nextMMIO uint64
	nextIO   uint64
	stats    Stats
}

// NewHost returns a bus with only the host bridge and registers the conf1
// ports on cfg.Bus.
func NewHost(cfg Config) (*Host, error) {
	switch {
	case cfg.Bus == nil:
		return nil, fmt.Errorf("%w: no bus", ErrBadConfig)
	case cfg.MMIOSize == 0 || cfg.MMIOBase+cfg.MMIOSize < cfg.MMIOBase || cfg.MMIOBase%mmioAlign != 0:
		return nil, fmt.Errorf("%w: MMIO window [%#x, +%#x)", ErrBadConfig, cfg.MMIOBase, cfg.MMIOSize)
	case cfg.IOBase+cfg.IOSize > 1<<16 || cfg.IOBase+cfg.IOSize < cfg.IOBase:
		return nil, fmt.Errorf("%w: I/O window [%#x, +%#x) passes port 0xffff", ErrBadConfig, cfg.IOBase, cfg.IOSize)
	}
	hb, err := newHostBridge()
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, nextMMIO: cfg.MMIOBase, nextIO: uint64(cfg.IOBase)}
	hb.cfg.attached = true
	h.slots[0] = &function{slot: 0, dev: hb, cfg: hb.cfg}
	if err := cfg.Bus.RegisterPort(cfg.ConfigPort, ConfigPorts, h); err != nil {
		return nil, fmt.Errorf("pci: conf1 ports: %w", err)
	}
	return h, nil
}

// FreeSlot returns the lowest slot with no device.
func (h *Host) FreeSlot() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s, f := range h.slots {
		if f == nil {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d slots are in use", ErrNoSpace, NumSlots)
}

// AddDevice puts d at slot (function 0) and, as firmware would, assigns its
// BARs from the windows and presets its interrupt line to INTxGSI. Decoding
// stays off until the guest enables it.
func (h *Host) AddDevice(slot int, d Device) error {
	if slot < 1 || slot >= NumSlots {
		return fmt.Errorf("%w: %d (want 1-%d)", ErrBadSlot, slot, NumSlots-1)
	}
	cfg := d.Config()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.slots[slot] != nil {
		return fmt.Errorf("%w: slot %d", ErrSlotInUse, slot)
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.attached {
		return fmt.Errorf("slot %d: %w", slot, ErrAlreadyUsed)
	}
	addrs, nextMMIO, nextIO, err := h.allocate(cfg.bars)
	if err != nil {
		return fmt.Errorf("pci: slot %d: %w", slot, err)
	}
	for i, a := range addrs {
		if cfg.bars[i].Kind != BARNone {
			cfg.setBARAddress(i, a)
		}
	}
	if pin := cfg.data[OffInterruptPin]; pin != 0 {
		cfg.data[OffInterruptLine] = uint8(INTxGSI(slot, pin))
	}
	cfg.attached = true
	h.nextMMIO, h.nextIO = nextMMIO, nextIO
	h.slots[slot] = &function{slot: slot, dev: d, cfg: cfg}
	return nil
}

// allocate places BARs largest first, each aligned to its size, without
// committing the window cursors.
func (h *Host) allocate(bars [NumBARs]BAR) (addrs [NumBARs]uint64, nextMMIO, nextIO uint64, err error) {
	nextMMIO, nextIO = h.nextMMIO, h.nextIO
	order := make([]int, 0, NumBARs)
	for i, b := range bars {
		if b.Kind != BARNone {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return bars[order[a]].Size > bars[order[b]].Size })
	mmioEnd := h.cfg.MMIOBase + h.cfg.MMIOSize
	ioEnd := uint64(h.cfg.IOBase) + uint64(h.cfg.IOSize)
	for _, i := range order {
		b := bars[i]
		if b.Kind == BARIO {
			a := alignUp(nextIO, b.Size)
			if a+b.Size > ioEnd {
				return addrs, 0, 0, fmt.Errorf("%w: I/O BAR %d of %#x bytes does not fit in [%#x, %#x)", ErrNoSpace, i, b.Size, h.cfg.IOBase, ioEnd)
			}
			addrs[i], nextIO = a, a+b.Size
			continue
		}
		a := alignUp(nextMMIO, max(b.Size, mmioAlign))
		if a < nextMMIO || a+b.Size > mmioEnd || a+b.Size < a {
			return addrs, 0, 0, fmt.Errorf("%w: memory BAR %d of %#x bytes does not fit in [%#x, %#x)", ErrNoSpace, i, b.Size, h.cfg.MMIOBase, mmioEnd)
		}
		if b.Kind == BARMem32 && a+b.Size > 1<<32 {
			return addrs, 0, 0, fmt.Errorf("%w: 32-bit BAR %d would end at %#x, above 4 GiB", ErrNoSpace, i, a+b.Size)
		}
		addrs[i], nextMMIO = a, a+b.Size
	}
	return addrs, nextMMIO, nextIO, nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// Stats returns the error counters.
func (h *Host) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// PortIn reads the address register (a dword at the config port) or
// configuration data (the four data ports). Anything else reads as ones.
func (h *Host) PortIn(port uint16, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	off := int(port) - int(h.cfg.ConfigPort)
	if off == 0 && len(data) == 4 {
		putLE(data, h.addr)
		return
	}
	f, reg, ok := h.target(off, len(data))
	if !ok {
		fill(data, 0xff)
		return
	}
	f.cfg.Read(reg, data)
	if ic, ok := f.dev.(ConfigInterceptor); ok {
		ic.ConfigRead(reg, data)
	}
}

// PortOut writes the address register or configuration data; writes to an
// absent function are dropped.
func (h *Host) PortOut(port uint16, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	off := int(port) - int(h.cfg.ConfigPort)
	if off == 0 && len(data) == 4 {
		h.addr = getLE(data) & addrKeep
		return
	}
	f, reg, ok := h.target(off, len(data))
	if !ok {
		return
	}
	f.cfg.Write(reg, data)
	if ic, ok := f.dev.(ConfigInterceptor); ok {
		ic.ConfigWrite(reg, data)
	}
	end := reg + len(data)
	if reg < OffCommand+2 && end > OffCommand || reg < OffBAR0+4*NumBARs && end > OffBAR0 {
		h.remap(f)
	}
}

// target decodes a data-port access at offset off (4-7 from the address
// port) into the function and register it reaches.
func (h *Host) target(off, n int) (*function, int, bool) {
	if off < 4 || off >= ConfigPorts || h.addr&addrEnable == 0 {
		return nil, 0, false
	}
	lane := off - 4
	if n != 1 && n != 2 && n != 4 || lane+n > 4 {
		return nil, 0, false
	}
	bus := (h.addr >> addrBusShift) & 0xff
	dev := (h.addr >> addrDevShift) & 0x1f
	fn := (h.addr >> addrFnShift) & 0x7
	if bus != 0 || fn != 0 || h.slots[dev] == nil {
		return nil, 0, false
	}
	return h.slots[dev], int(h.addr&addrRegMask) + lane, true
}

// remap brings the bus registrations of f's BARs in line with its command
// register and BAR values. Callers hold h.mu.
func (h *Host) remap(f *function) {
	cmd := f.cfg.Command()
	for i := range NumBARs {
		b := f.cfg.BAR(i)
		var want mapping
		if addr, ok := f.cfg.BARAddress(i); ok && addr != 0 {
			io := b.Kind == BARIO
			on := io && cmd&CommandIO != 0 || !io && cmd&CommandMemory != 0
			fits := addr+b.Size > addr && (!io || addr+b.Size <= 1<<16)
			if on && fits {
				want = mapping{active: true, io: io, base: addr, size: b.Size}
			}
		}
		if want == f.maps[i] {
			continue
		}
		if old := f.maps[i]; old.active {
			var err error
			if old.io {
				err = h.cfg.Bus.UnregisterPort(uint16(old.base))
			} else {
				err = h.cfg.Bus.UnregisterMMIO(old.base)
			}
			if err != nil {
				h.mapError(fmt.Errorf("pci: slot %d BAR %d: unmap %#x: %w", f.slot, i, old.base, err))
			}
			f.maps[i] = mapping{}
			if l, ok := f.dev.(BARListener); ok {
				l.BARUnmapped(i, old.base, old.io)
			}
		}
		if !want.active {
			continue
		}
		w := &barWindow{dev: f.dev, bar: i, base: want.base}
		var err error
		if want.io {
			err = h.cfg.Bus.RegisterPort(uint16(want.base), uint16(want.size), w)
		} else {
			err = h.cfg.Bus.RegisterMMIO(want.base, want.size, w)
		}
		if err != nil {
			h.mapError(fmt.Errorf("pci: slot %d BAR %d at %#x (+%#x): %w", f.slot, i, want.base, want.size, err))
			continue
		}
		f.maps[i] = want
		if l, ok := f.dev.(BARListener); ok {
			l.BARMapped(i, want.base, want.io)
		}
	}
}

func (h *Host) mapError(err error) {
	h.stats.MapErrors++
	h.stats.LastMapErr = err
}

func putLE(b []byte, v uint32) {
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
}

func getLE(b []byte) uint32 {
	var v uint32
	for i := range b {
		v |= uint32(b[i]) << (8 * i)
	}
	return v
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}
