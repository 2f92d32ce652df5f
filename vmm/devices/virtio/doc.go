// Package virtio holds what every smolvm virtio device shares: the split
// virtqueue (descriptor chains, direct and indirect; the used ring;
// notification suppression with or without VIRTIO_F_EVENT_IDX), the virtio
// 1.x modern PCI transport (Transport: the common, notify, ISR and device
// configuration structures and an MSI-X table with its PBA in one 64-bit
// memory BAR, the PCI configuration access capability, INTx through the ISR
// when MSI-X is off), feature negotiation, device reset, and the Device
// interface each device (blk, rng, vsock) implements.
//
// Guest memory reaches devices through the Memory interface (DirectMemory
// when the host maps it, for zero-copy I/O) and interrupts leave through
// Interrupt; the machine implements both (over its RAM regions and KVM). A bad address or a malformed chain from the guest is a device
// error: the transport sets DEVICE_NEEDS_RESET and raises a configuration
// change interrupt; nothing here panics on guest input.
//
// Threading: configuration and notify writes arrive on vCPU threads. A
// device does its I/O on its own goroutines (Worker is the usual one) and
// never blocks the vCPU thread on disk or socket I/O. Interrupts are sent from
// device goroutines without taking the transport's configuration lock, so a
// reset on a vCPU thread can wait for a device's goroutine to finish.
//
// This package must not import KVM code; it knows nothing about where its
// BAR lives beyond what the PCI host tells it.
package virtio
