package virtio

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/smolvm/smolvm/vmm/devices/pci"
)

// PCI identity of virtio 1.x devices (virtio 1.x, section 4.1.2).
const (
	PCIVendorID     = 0x1af4
	PCIDeviceIDBase = 0x1040 // + device type, for non-transitional devices
	pciRevision     = 1
	pciSubsystemID  = 0x40
)

// Layout of the transport's single 64-bit memory BAR.
const (
	TransportBAR  = 0
	BARSize       = 0x8000
	CommonOffset  = 0x0000
	commonLen     = 0x40 // struct virtio_pci_common_cfg up to queue_reset, rounded
	ISROffset     = 0x1000
	DeviceOffset  = 0x2000
	deviceLen     = 0x1000
	NotifyOffset  = 0x3000
	NotifyStride  = 4 // notify_off_multiplier: queue q is notified at NotifyOffset + 4*q
	MSIXOffset    = 0x4000
	MSIXPBAOffset = 0x6000
	maxQueues     = (MSIXOffset - NotifyOffset) / NotifyStride
	maxVectors    = (MSIXPBAOffset - MSIXOffset) / msixEntrySize
)

// virtio_pci_cap cfg_type values.
const (
	capCommon = 1
	capNotify = 2
	capISR    = 3
	capDevice = 4
	capPCICfg = 5
)

// ISR bits.
const (
	isrQueue  = 1
	isrConfig = 2
)

// TransportConfig is what NewTransport needs.
type TransportConfig struct {
	Device Device
	Mem    Memory
	IRQ    Interrupt
	// ClassCode is the PCI class<<16|subclass<<8|prog-if (0xff0000,
	// "other", if zero).
	ClassCode uint32
}

// Transport is the virtio 1.x modern PCI transport of one device: a
// pci.Device (with ConfigInterceptor and BARListener) to add to a pci.Host.
type Transport struct {
	dev    Device
	mem    Memory
	irq    Interrupt
	cfg    *pci.ConfigSpace
	queues []*Queue

	offered uint64 // device | transport features

	msixCap, pciCfgCap int

	// mu serialises the driver's configuration accesses (vCPU threads).
	// Device goroutines never take it.
	mu             sync.Mutex
	devFeatureSel  uint32
	drvFeatureSel  uint32
	driverFeatures uint64
	queueSel       uint16
	active         bool
	paused         bool
	pausing        chan struct{} // a Pause that timed out, still landing

	status    atomic.Uint32 // device_status; device goroutines OR in NEEDS_RESET
	configGen atomic.Uint32 // config_generation (low 8 bits)

	// irqMu guards interrupt state; taken by device goroutines.
	irqMu      sync.Mutex
	isr        uint8
	intxHigh   bool
	msixConfig uint16
	msix       msixTable
	lastErr    error
	irqErrs    uint64

	mapped  atomic.Uint64 // where the BAR decodes now (0: nowhere)
	onMapFn atomic.Pointer[func(base uint64, mapped bool)]
}

// NewTransport builds the configuration space and BAR layout for cfg.Device.
func NewTransport(c TransportConfig) (*Transport, error) {
	if c.Device == nil || c.Mem == nil || c.IRQ == nil {
		return nil, fmt.Errorf("%w: transport needs a device, memory and an interrupt", ErrConfig)
	}
	sizes := c.Device.QueueSizes()
	if len(sizes) == 0 || len(sizes) > maxQueues || len(sizes)+1 > maxVectors {
		return nil, fmt.Errorf("%w: %d queues (want 1-%d)", ErrConfig, len(sizes), maxQueues)
	}
	class := c.ClassCode
	if class == 0 {
		class = 0xff0000
	}
	cfg, err := pci.NewConfigSpace(pci.Header{
		VendorID: PCIVendorID, DeviceID: PCIDeviceIDBase + c.Device.Type(), ClassCode: class, Revision: pciRevision,
		SubsystemVendorID: PCIVendorID, SubsystemID: pciSubsystemID, InterruptPin: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("virtio: %w", err)
	}
	t := &Transport{dev: c.Device, mem: c.Mem, irq: c.IRQ, cfg: cfg,
		offered: c.Device.Features() | transportFeatures, msixConfig: NoVector}
	for i, s := range sizes {
		if s == 0 || s&(s-1) != 0 || s > 32768 {
			return nil, fmt.Errorf("%w: queue %d maximum size %d is not a power of two up to 32768", ErrConfig, i, s)
		}
		t.queues = append(t.queues, NewQueue(i, s))
	}
	t.msix.init(len(sizes) + 1)
	if err := t.buildConfig(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Transport) buildConfig() error {
	if err := t.cfg.SetBAR(TransportBAR, pci.BAR{Kind: pci.BARMem64, Size: BARSize}); err != nil {
		return fmt.Errorf("virtio: %w", err)
	}
	caps := []struct {
		typ         uint8
		off, length uint32
		extra       []byte
	}{
		{capCommon, CommonOffset, commonLen, nil},
		{capNotify, NotifyOffset, uint32(NotifyStride * len(t.queues)), le32(NotifyStride)},
		{capISR, ISROffset, 1, nil},
		{capDevice, DeviceOffset, deviceLen, nil},
	}
	for _, c := range caps {
		if _, err := t.cfg.AddCapability(pci.CapIDVendor, vendorCap(c.typ, TransportBAR, c.off, c.length, c.extra), nil); err != nil {
			return fmt.Errorf("virtio: %w", err)
		}
	}
	// PCI configuration access: bar, offset, length and data are writable.
	body := vendorCap(capPCICfg, 0, 0, 0, make([]byte, 4))
	wmask := make([]byte, len(body))
	wmask[2] = 0xff
	for i := 6; i < len(wmask); i++ {
		wmask[i] = 0xff
	}
	off, err := t.cfg.AddCapability(pci.CapIDVendor, body, wmask)
	if err != nil {
		return fmt.Errorf("virtio: %w", err)
	}
	t.pciCfgCap = off
	// MSI-X: table size-1, table and PBA in the BAR; enable and function
	// mask writable.
	n := uint16(len(t.msix.entries))
	msix := append(le16(n-1), le32(MSIXOffset|TransportBAR)...)
	msix = append(msix, le32(MSIXPBAOffset|TransportBAR)...)
	mmask := make([]byte, len(msix))
	mmask[1] = 0xc0
	if t.msixCap, err = t.cfg.AddCapability(pci.CapIDMSIX, msix, mmask); err != nil {
		return fmt.Errorf("virtio: %w", err)
	}
	return nil
}

// vendorCap is a virtio_pci_cap body after the ID and next bytes.
func vendorCap(typ, bar uint8, off, length uint32, extra []byte) []byte {
	b := []byte{byte(16 + len(extra)), typ, bar, 0, 0, 0}
	b = append(b, le32(off)...)
	b = append(b, le32(length)...)
	return append(b, extra...)
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }
func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// Config is the function's PCI configuration space (pci.Device).
func (t *Transport) Config() *pci.ConfigSpace { return t.cfg }

// Device is the device behind the transport.
func (t *Transport) Device() Device { return t.dev }

// Status is the device status register.
func (t *Transport) Status() uint8 { return uint8(t.status.Load()) }

// Err is the last device error or interrupt failure, if any.
func (t *Transport) Err() error {
	t.irqMu.Lock()
	defer t.irqMu.Unlock()
	return t.lastErr
}

// BARRead serves the driver's reads of the BAR (pci.Device).
func (t *Transport) BARRead(bar int, off uint64, data []byte) {
	clear(data)
	if bar != TransportBAR {
		return
	}
	switch {
	case off >= CommonOffset && off < CommonOffset+commonLen:
		t.commonRead(off-CommonOffset, data)
	case off == ISROffset:
		data[0] = t.readISR()
	case off >= DeviceOffset && off < DeviceOffset+deviceLen:
		t.dev.ReadConfig(off-DeviceOffset, data)
	case off >= MSIXOffset && off < MSIXPBAOffset:
		t.irqMu.Lock()
		t.msix.readTable(off-MSIXOffset, data)
		t.irqMu.Unlock()
	case off >= MSIXPBAOffset:
		t.irqMu.Lock()
		t.msix.readPBA(off-MSIXPBAOffset, data)
		t.irqMu.Unlock()
	}
}

// BARWrite serves the driver's writes to the BAR (pci.Device).
func (t *Transport) BARWrite(bar int, off uint64, data []byte) {
	if bar != TransportBAR {
		return
	}
	switch {
	case off >= CommonOffset && off < CommonOffset+commonLen:
		t.commonWrite(off-CommonOffset, data)
	case off >= DeviceOffset && off < DeviceOffset+deviceLen:
		t.dev.WriteConfig(off-DeviceOffset, data)
	case off >= NotifyOffset && off < NotifyOffset+uint64(NotifyStride*len(t.queues)):
		t.Notify(int((off - NotifyOffset) / NotifyStride))
	case off >= MSIXOffset && off < MSIXPBAOffset:
		t.irqMu.Lock()
		fire := t.msix.writeTable(off-MSIXOffset, data, t.msixState())
		t.irqMu.Unlock()
		t.deliver(fire)
	}
}

// Notify is a driver notification of queue q, as a write to its notify
// address (also the path for an ioeventfd on that address).
func (t *Transport) Notify(q int) {
	t.mu.Lock()
	ok := t.active && q >= 0 && q < len(t.queues)
	t.mu.Unlock()
	if ok {
		t.dev.QueueNotify(q)
	}
}

// NotifyAddress is the guest-physical address a driver writes to notify
// queue q while the BAR is decoded at base.
func NotifyAddress(base uint64, q int) uint64 {
	return base + NotifyOffset + uint64(NotifyStride*q)
}

// OnBARMapped registers fn to learn where the BAR decodes (mapped true) and
// when it stops (false), to place ioeventfds on the notify addresses. It is
// called at once if the BAR is mapped now, and with the PCI host's lock held.
func (t *Transport) OnBARMapped(fn func(base uint64, mapped bool)) {
	t.onMapFn.Store(&fn)
	if b := t.mapped.Load(); b != 0 {
		fn(b, true)
	}
}

// BARMapped implements pci.BARListener.
func (t *Transport) BARMapped(bar int, addr uint64, _ bool) {
	if bar != TransportBAR {
		return
	}
	t.mapped.Store(addr)
	if fn := t.onMapFn.Load(); fn != nil {
		(*fn)(addr, true)
	}
}

// BARUnmapped implements pci.BARListener.
func (t *Transport) BARUnmapped(bar int, addr uint64, _ bool) {
	if bar != TransportBAR {
		return
	}
	t.mapped.Store(0)
	if fn := t.onMapFn.Load(); fn != nil {
		(*fn)(addr, false)
	}
}

// Close resets the device, stopping its goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
	return nil
}
