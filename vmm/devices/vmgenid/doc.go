// Package vmgenid is the VM generation ID device (Microsoft's "Virtual
// Machine Generation ID" as Linux's vmgenid driver reads it): 16 bytes of
// guest memory that change whenever the machine is cloned or restored from
// a snapshot, plus an edge-triggered interrupt that tells the guest to
// reread them. Linux then reseeds its RNG, so two clones of one snapshot
// never share random numbers.
//
// The device owns nothing but a slice of memory (a page the VMM keeps
// outside guest RAM, so it is never part of a snapshot and never demand
// paged) and an IRQ line; the ACPI description (ADDR, the Generic Event
// Device that turns the interrupt into Notify(VGEN, 0x80)) is built by
// vmm/arch/amd64/acpi. It must not import KVM code or start goroutines.
package vmgenid
