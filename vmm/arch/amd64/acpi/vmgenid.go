package acpi

// Identifiers of the VM generation ID device. Linux's vmgenid driver
// (drivers/virt/vmgenid.c) binds a device whose _HID or _CID is
// "VM_GEN_COUNTER" (ACPICA upper-cases the spec's "VM_Gen_Counter") and
// reads the ID's guest-physical address from its ADDR object: a package of
// two integers, the low and high 32 bits.
const (
	VMGenIDHID = "SMOL0001"
	VMGenIDCID = "VM_GEN_COUNTER"
	// VMGenIDNotify is the notification value that tells the guest the ID
	// changed.
	VMGenIDNotify = 0x80
	// GEDHID is the ACPI Generic Event Device: in a hardware-reduced
	// machine (no GPE blocks, which Linux ignores when HW_REDUCED_ACPI is
	// set) an interrupt listed in its _CRS runs its _EVT method.
	GEDHID = "ACPI0013"
	// VMGenIDSize is the size of the generation ID.
	VMGenIDSize = 16
)

// vmgenidDevices builds the VM generation ID device and the Generic Event
// Device that notifies it:
//
//	Device(VGEN) {
//	  Name(_HID, "SMOL0001")  Name(_CID, "VM_GEN_COUNTER")  Name(_DDN, "VM_Gen_Counter")
//	  Name(ADDR, Package(){DWord low, DWord high})   // of VMGenIDAddr
//	}
//	Device(GED0) {
//	  Name(_HID, "ACPI0013")  Name(_UID, 0)
//	  Name(_CRS, ResourceTemplate(){Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive){VMGenIDGSI}})
//	  Method(_EVT, 1) { If (LEqual(Arg0, VMGenIDGSI)) { Notify(\_SB.VGEN, 0x80) } }
//	}
//
// The VMM writes a new ID at VMGenIDAddr and pulses the GSI: Linux's GED
// driver (drivers/acpi/evged.c) runs _EVT with the GSI, the vmgenid driver
// gets the notification, rereads the ID and, when it changed, reseeds the
// kernel's RNG ("crng reseeded due to virtual machine fork").
func vmgenidDevices(c Config) [][]byte {
	vgen := amlDevice("VGEN",
		amlName("_HID", amlString(VMGenIDHID)),
		amlName("_CID", amlString(VMGenIDCID)),
		amlName("_DDN", amlString("VM_Gen_Counter")),
		amlName("ADDR", amlPackage(amlDWord(uint32(c.VMGenIDAddr)), amlDWord(uint32(c.VMGenIDAddr>>32)))),
	)
	ged := amlDevice("GED0",
		amlName("_HID", amlString(GEDHID)),
		amlName("_UID", amlInteger(0)),
		amlName("_CRS", amlBuffer(resourceTemplate(edgeInterrupt(c.VMGenIDGSI)))),
		amlMethod("_EVT", 1, false,
			amlIf(amlLEqual(amlArg(0), amlInteger(uint64(c.VMGenIDGSI))),
				amlNotify(`\_SB.VGEN`, amlInteger(VMGenIDNotify)))),
	)
	return [][]byte{vgen, ged}
}
