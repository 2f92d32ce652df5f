// Package vmm is smolvm's KVM x86-64 virtual machine monitor: it assembles
// KVM objects (vmm/kvm), the x86 boot and firmware tables (vmm/arch/amd64) and
// devices (vmm/devices) into a machine that boots a Linux bzImage or resumes
// saved state.
//
// It must not serve its own guest memory faults (the pager's daemon does) and
// its Go code must not touch guest memory that may still be missing.
package vmm
