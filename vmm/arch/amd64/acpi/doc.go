// Package acpi builds the ACPI tables a hardware-reduced x86 virtual machine
// hands to Linux: RSDP (revision 2), XSDT, FADT (revision 6, HW_REDUCED_ACPI,
// sleep control/status and reset registers in I/O space), MADT (local APICs,
// IOAPIC, interrupt source overrides, LAPIC NMI) and a DSDT whose AML comes
// from this package's own small encoder (aml.go, resource.go): \_S5, the PCI
// host bridge \_SB.PCI0 with its resources and INTx routing (_PRT), COM1 and,
// when asked, a VM generation ID device notified through a Generic Event
// Device (vmgenid.go; aml_method.go encodes its _EVT method).
//
// It knows the ACPI specification, not the machine: every address, port and
// IRQ comes from Config (the amd64 package fills it from its layout). It
// must not import the VMM, issue ioctls or read guest memory.
package acpi
