package acpi

// DSDT contents.
const (
	dsdtRevision = 2 // 64-bit AML integers
	pciSlots     = 32
	intxPins     = 4
	intxGSIs     = 8
)

// DSDT builds the Differentiated System Description Table:
//
//	Name(\_S5, Package(){S5SleepType, 0, 0, 0})
//	Scope(\_SB) {
//	  Device(PCI0) {  // PCIe host bridge, segment 0, bus 0
//	    _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN 0, _UID 0
//	    _CRS: bus 0-0; I/O 0xCF8 len 8 (config ports); I/O windows
//	          0-0xCF7 and 0xD00-0xFFFF; memory PCIMMIOBase..PCIMMIOEnd-1
//	    _PRT: slots 1-31, pins A-D -> GSI PCIIntxGSIBase + (slot+pin)%8
//	  }
//	  Device(COM1) { _HID PNP0501, _UID 0, _CRS: I/O COM1Port len 8, IRQ }
//	  Device(VGEN), Device(GED0)  // with VMGenIDAddr: vmgenid.go
//	}
//
// The _PRT names GSIs directly (source 0), which Linux routes as level
// triggered, active low: the usual PCI INTx wiring with an IOAPIC.
func DSDT(c Config) []byte {
	t := header("DSDT", 0, dsdtRevision)
	t = append(t, amlName(`\_S5`, amlPackage(
		amlInteger(uint64(c.S5SleepType)), amlInteger(0), amlInteger(0), amlInteger(0)))...)
	devices := [][]byte{pciHostBridge(c)}
	if c.COM1Port != 0 {
		devices = append(devices, amlDevice("COM1",
			amlName("_HID", amlEISAID("PNP0501")),
			amlName("_UID", amlInteger(0)),
			amlName("_CRS", amlBuffer(resourceTemplate(
				ioPort(c.COM1Port, 8),
				irqNoFlags(c.COM1IRQ)))),
		))
	}
	if c.VMGenIDAddr != 0 {
		devices = append(devices, vmgenidDevices(c)...)
	}
	t = append(t, amlScope(`\_SB`, devices...)...)
	return finish(t)
}

func pciHostBridge(c Config) []byte {
	crs := resourceTemplate(
		wordBusNumber(0, 0),
		ioPort(c.PCIConfigPort, 8),
		wordIO(0, c.PCIConfigPort-1),
		wordIO(c.PCIConfigPort+8, 0xFFFF),
		dwordMemory(c.PCIMMIOBase, uint32(c.PCIMMIOEnd-1)),
	)
	var prt [][]byte
	for slot := 1; slot < pciSlots; slot++ {
		for pin := range intxPins {
			gsi := c.PCIIntxGSIBase + uint32((slot+pin)%intxGSIs)
			prt = append(prt, amlPackage(
				amlDWord(uint32(slot)<<16|0xFFFF), // _ADR: device slot, any function
				amlInteger(uint64(pin)),
				amlInteger(0), // source: none, the index is a GSI
				amlInteger(uint64(gsi)),
			))
		}
	}
	return amlDevice("PCI0",
		amlName("_HID", amlEISAID("PNP0A08")),
		amlName("_CID", amlEISAID("PNP0A03")),
		amlName("_SEG", amlInteger(0)),
		amlName("_BBN", amlInteger(0)),
		amlName("_UID", amlInteger(0)),
		amlName("_CRS", amlBuffer(crs)),
		amlName("_PRT", amlPackage(prt...)),
	)
}
