// Package devices holds smolvm's emulated device models and the Bus that
// routes a vCPU's port I/O and MMIO exits to them.
//
// The root package defines the interfaces every device speaks (PortDevice,
// MMIODevice, IRQLine) and the Bus. Subpackages hold one device each:
// serial (8250/16550A UART), i8042 (keyboard controller, for reset), acpi
// (hardware-reduced ACPI sleep and reset registers) and pci (host bridge on
// the conf1 ports, configuration space and BAR mapping for endpoints such as
// virtio-pci). Each device has a plain State struct with Save and Restore
// beside it.
//
// Devices must not import KVM code, touch guest memory or start goroutines of
// their own (the serial console's output writer is the one documented
// exception). Device callbacks run on the vCPU thread that made the access,
// so they must not block for long.
package devices
