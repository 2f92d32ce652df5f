// Package vmm is smolvm's KVM x86-64 virtual machine monitor: it assembles
// KVM objects (vmm/kvm), the x86 boot and firmware tables (vmm/arch/amd64) and
// devices (vmm/devices) into a machine that boots a Linux bzImage or resumes
// saved state.
//
// A Machine (machine.go) is built by New from a Config (config.go): guest RAM
// as one anonymous mapping per region of the layout (below the 32-bit PCI
// hole, and from 4 GiB when there is more), the kernel, initrd, command line,
// zero page, GDT, page tables and ACPI tables written by amd64.SetupBoot, the
// VM with its in-kernel irqchip, PIT and GSI routes (ISA IRQ0 at GSI 2, as the
// MADT says), the legacy devices (devices.go: COM1, i8042, ACPI sleep/reset
// registers, PCI host bridge) and the vCPUs (vcpu.go: CPUID per APIC ID, boot
// MSRs, LAPIC virtual wire; vCPU 0 in long mode at the kernel's 64-bit entry,
// the others waiting for INIT/SIPI).
//
// Run (run.go) runs one goroutine per vCPU, each locked to its OS thread for
// good, serving IO and MMIO exits through the devices.Bus. The first stop
// request wins (stop.go): guest poweroff (ACPI S5), reboot (ACPI reset
// register, i8042, system event), context cancel, or a vCPU failure (typed
// *ExitError: triple fault, internal error, failed entry, unexpected exit,
// naming the vCPU and RIP). Stopping kicks every vCPU out of KVM_RUN
// (kvm.VCPU.Kick) and waits at most StopTimeout, kicking again meanwhile.
//
// It must not serve its own guest memory faults (the pager's daemon does) and
// its Go code must not touch guest memory that may still be missing.
package vmm
