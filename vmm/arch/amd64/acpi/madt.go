package acpi

import "encoding/binary"

// MADT ("APIC") structure types and flags.
const (
	madtRevision       = 5
	madtPCATCompat     = 1 << 0
	madtLocalAPIC      = 0
	madtIOAPIC         = 1
	madtSourceOverride = 2
	madtLocalAPICNMI   = 4
	madtLAPICEnabled   = 1 << 0

	// MPS INTI flags: polarity in bits 1:0, trigger mode in bits 3:2.
	intiConforming = 0
	intiActiveHigh = 1
	intiActiveLow  = 3
	intiEdge       = 1 << 2
	intiLevel      = 3 << 2
	allProcessors  = 0xFF
	lint1          = 1
	isaBus         = 0
	legacyTimerIRQ = 0
	legacyTimerGSI = 2
)

// MADT builds the Multiple APIC Description Table: one enabled Processor
// Local APIC per vCPU (UID = APIC id = index), the IOAPIC with GSI base 0,
// interrupt source overrides IRQ0 -> GSI2 and SCI level/active high, and
// NMI on LINT1 of every processor.
func MADT(c Config) []byte {
	le := binary.LittleEndian
	t := header("APIC", 0, madtRevision)
	t = le.AppendUint32(t, c.LAPICAddr)
	t = le.AppendUint32(t, madtPCATCompat)
	for i := range c.CPUs {
		t = append(t, madtLocalAPIC, 8, byte(i), byte(i))
		t = le.AppendUint32(t, madtLAPICEnabled)
	}
	t = append(t, madtIOAPIC, 12, c.IOAPICID, 0)
	t = le.AppendUint32(t, c.IOAPICAddr)
	t = le.AppendUint32(t, 0) // GSI base
	t = sourceOverride(t, legacyTimerIRQ, legacyTimerGSI, intiConforming)
	t = sourceOverride(t, c.SCI, uint32(c.SCI), intiActiveHigh|intiLevel)
	t = append(t, madtLocalAPICNMI, 6, allProcessors)
	t = le.AppendUint16(t, intiConforming)
	t = append(t, lint1)
	return finish(t)
}

func sourceOverride(t []byte, irq uint8, gsi uint32, flags uint16) []byte {
	t = append(t, madtSourceOverride, 10, isaBus, irq)
	t = binary.LittleEndian.AppendUint32(t, gsi)
	return binary.LittleEndian.AppendUint16(t, flags)
}
