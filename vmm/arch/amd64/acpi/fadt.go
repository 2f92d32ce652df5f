package acpi

import "encoding/binary"

// FADT ("FACP") layout, revision 6 (ACPI 6.x, 276 bytes).
const (
	fadtSize     = 276
	fadtRevision = 6
	fadtMinor    = 5

	fadtDSDT         = 40
	fadtSCIInt       = 46
	fadtIAPCBootArch = 109
	fadtFlags        = 112
	fadtResetReg     = 116
	fadtResetValue   = 128
	fadtMinorVersion = 131
	fadtXDSDT        = 140
	fadtSleepControl = 244
	fadtSleepStatus  = 256
	fadtHypervisorID = 268

	// Flags.
	fadtWBINVD        = 1 << 0
	fadtPowerButton   = 1 << 4 // no fixed power button
	fadtSleepButton   = 1 << 5 // no fixed sleep button
	fadtResetRegSup   = 1 << 10
	fadtHWReducedACPI = 1 << 20

	// IA-PC boot architecture flags.
	bootArchLegacyDevices = 1 << 0
	bootArch8042          = 1 << 1
	bootArchVGANotPresent = 1 << 2
	bootArchASPMControls  = 1 << 4 // OSPM must not enable ASPM
	bootArchNoCMOSRTC     = 1 << 5

	// Generic Address Structure.
	gasSystemIO = 1
	gasByte     = 1
)

// FADT builds the Fixed ACPI Description Table for a hardware-reduced
// machine: HW_REDUCED_ACPI, the sleep control/status registers and the reset
// register in I/O space (1 byte each), SCI, DSDT and X_DSDT pointing at dsdt.
// IAPC_BOOT_ARCH says: legacy (ISA) devices present, no VGA, no CMOS RTC
// (the guest takes wall time from kvmclock), OSPM must not touch ASPM, and
// an 8042 only when c.I8042 (the i8042 model exists for the reset command;
// without the flag Linux does not probe for a keyboard).
func FADT(c Config, dsdt uint64) []byte {
	le := binary.LittleEndian
	t := header("FACP", fadtSize, fadtRevision)[:fadtSize]
	le.PutUint32(t[fadtDSDT:], uint32(dsdt))
	le.PutUint16(t[fadtSCIInt:], uint16(c.SCI))
	arch := uint16(bootArchLegacyDevices | bootArchVGANotPresent | bootArchASPMControls | bootArchNoCMOSRTC)
	if c.I8042 {
		arch |= bootArch8042
	}
	le.PutUint16(t[fadtIAPCBootArch:], arch)
	le.PutUint32(t[fadtFlags:], fadtWBINVD|fadtPowerButton|fadtSleepButton|fadtResetRegSup|fadtHWReducedACPI)
	putGAS(t[fadtResetReg:], c.ResetPort)
	t[fadtResetValue] = c.ResetValue
	t[fadtMinorVersion] = fadtMinor
	le.PutUint64(t[fadtXDSDT:], dsdt)
	putGAS(t[fadtSleepControl:], c.SleepControlPort)
	putGAS(t[fadtSleepStatus:], c.SleepStatusPort)
	copy(t[fadtHypervisorID:], "SMOLVM")
	return finish(t)
}

// putGAS writes a Generic Address Structure for a 1-byte I/O port.
func putGAS(b []byte, port uint16) {
	b[0] = gasSystemIO
	b[1] = 8 // bit width
	b[2] = 0 // bit offset
	b[3] = gasByte
	binary.LittleEndian.PutUint64(b[4:], uint64(port))
}
