package pci

// Device is a PCI endpoint function. The Host routes the guest's
// configuration accesses to its ConfigSpace and, while the guest has decoding
// enabled, the accesses to each BAR's range to BARRead and BARWrite with the
// offset inside that BAR. BAR handlers run on the vCPU thread and must be
// safe for concurrent vCPUs.
type Device interface {
	Config() *ConfigSpace
	BARRead(bar int, offset uint64, data []byte)
	BARWrite(bar int, offset uint64, data []byte)
}

// ConfigInterceptor is implemented by devices that react to their
// configuration space: ConfigRead runs after the stored bytes were copied into
// data and may replace them; ConfigWrite runs after the masked write was
// applied (MSI-X enable, virtio's PCI configuration access window). Both run
// with the Host's lock held and must not call the Host.
type ConfigInterceptor interface {
	ConfigRead(offset int, data []byte)
	ConfigWrite(offset int, data []byte)
}

// BARListener is implemented by devices that must know where their BARs
// are decoded, e.g. to place ioeventfds on a virtio notify region. The Host
// calls BARUnmapped when decoding of a BAR at addr stops (the guest disabled
// decoding, moved the BAR, or a Restore changed it) and BARMapped when it
// starts at addr. Both run with the Host's lock held and must not call the
// Host.
type BARListener interface {
	BARMapped(bar int, addr uint64, io bool)
	BARUnmapped(bar int, addr uint64, io bool)
}

// INTxGSI returns the GSI that INTx pin (1=INTA# .. 4=INTD#) of a slot is
// wired to: 16 + ((slot + pin - 1) % 8). The arch package's ACPI _PRT
// describes the same routing with pins numbered 0-3.
func INTxGSI(slot int, pin uint8) uint32 {
	return 16 + uint32((slot+int(pin)-1)%8)
}

// barWindow adapts one BAR's mapped range to the devices.Bus interfaces,
// turning absolute addresses into offsets inside the BAR.
type barWindow struct {
	dev  Device
	bar  int
	base uint64
}

func (w *barWindow) MMIORead(addr uint64, data []byte)  { w.dev.BARRead(w.bar, addr-w.base, data) }
func (w *barWindow) MMIOWrite(addr uint64, data []byte) { w.dev.BARWrite(w.bar, addr-w.base, data) }
func (w *barWindow) PortIn(port uint16, data []byte)    { w.dev.BARRead(w.bar, uint64(port)-w.base, data) }
func (w *barWindow) PortOut(port uint16, data []byte) {
	w.dev.BARWrite(w.bar, uint64(port)-w.base, data)
}
