// Package pci emulates PCI bus 0 of a PC: configuration mechanism #1 on ports
// 0xCF8 (address) and 0xCFC-0xCFF (data), a host bridge at 00:00.0, and the
// plumbing endpoint devices (virtio-pci) build on: a configuration space with
// write masks, the BAR sizing protocol, a capability list, BAR addresses
// assigned from an MMIO window as firmware would, and registration of each
// BAR's range on the devices.Bus while the guest has decoding enabled.
//
// An endpoint implements Device (its ConfigSpace plus BAR read/write
// handlers that get offsets inside the BAR) and optionally
// ConfigInterceptor (react to configuration reads and writes: MSI-X enable,
// virtio's PCI configuration window) and BARListener (learn where a BAR is
// decoded, to place ioeventfds). Host.AddDevice assigns BAR addresses the
// way firmware would, largest first and naturally aligned; the guest may move
// them and the Host follows.
//
// Legacy INTx: pin P (1=A .. 4=D) of slot S is wired to GSI
// 16 + ((S + P - 1) % 8), the same routing the arch package's ACPI _PRT
// describes; the interrupt line register is preset to that GSI.
//
// This package must not import KVM code or start goroutines; an endpoint
// raises its own interrupts.
package pci
