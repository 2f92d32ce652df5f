// Package amd64 holds everything x86-64 that a VMM needs to start a stock
// Linux bzImage directly in 64-bit mode: the guest physical layout
// (layout.go), bzImage parsing (bzimage.go), kernel/initrd/cmdline placement
// and the zero page (load.go, bootparams.go), the e820 map (e820.go), GDT and
// identity page tables (gdt.go, paging.go), boot register values (regs.go),
// CPUID filtering per vCPU (cpuid.go), the boot MSR list (msr.go), LAPIC LVT
// setup (lapic.go), the reset-vector stub that turns a reboot through the
// BIOS into an ACPI reset (resetvector.go) and, through the acpi subpackage,
// the ACPI tables.
//
// Guest memory is given as a []byte indexed by guest physical address (the
// RAM below the 32-bit PCI hole); functions write into it and return the
// addresses they used. The types (Regs, Sregs, Segment, DTable, CPUIDEntry,
// MSR) mirror KVM's structures but are this package's own: the vmm/kvm
// package converts them.
//
// It must not issue ioctls, import vmm/kvm, start goroutines or touch
// anything outside the byte slices it is given. It must not read guest memory
// that the pager may not have populated: it only writes at boot.
package amd64
