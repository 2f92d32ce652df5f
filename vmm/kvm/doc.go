// Package kvm is smolvm's thin, typed layer over the Linux KVM API on x86-64:
// the system (/dev/kvm), a VM (memory slots, in-kernel irqchip and PIT,
// interrupt lines, ioeventfd/irqfd) and its vCPUs (the mmap'd kvm_run page,
// the run loop's exits, and every piece of architectural state KVM lets
// userspace read and write).
//
// Saved state lives here beside its owner: VCPUState (Save/RestoreState on a
// VCPU) and VMState (SaveState/RestoreState on a VM) are plain structs that a
// snapshot can encode.
//
// The ioctl structures mirror the kernel's layout exactly and all live in
// abi.go; abi_test.go checks their sizes and the ioctl numbers against the
// kernel's values.
//
// This package knows nothing about x86 boot (vmm/arch/amd64), devices
// (vmm/devices) or how a machine is assembled (vmm). It never reads or writes
// guest memory itself: memory is handed to it as a byte slice for a slot.
//
// Stopping a vCPU that is blocked in KVM_RUN: Kick sets kvm_run.immediate_exit
// and sends SIGURG to the vCPU's OS thread with tgkill. SIGURG is the signal
// the Go runtime itself uses for preemption, so every Go program already
// tolerates spurious ones; its handler interrupts the ioctl, and KVM_RUN
// returns EINTR (KVM never restarts it). immediate_exit covers the window in
// which the thread is about to enter KVM_RUN but has not yet.
package kvm
