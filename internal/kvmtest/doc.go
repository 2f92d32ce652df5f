// Package kvmtest decides whether a test that needs real hardware KVM runs,
// skips or fails.
//
// A host "has KVM" only when a hardware vendor module is loaded
// (/sys/module/kvm_intel or /sys/module/kvm_amd) and /dev/kvm opens: some
// build machines expose a /dev/kvm backed by kvm_pvm, on which stock kernels
// die with emulation failures. On a host without hardware KVM, Require skips
// the test, because `make test-kvm` (scripts/test-kvm.sh) runs the same test
// binaries inside the lab VM (internal/lab), where SMOLVM_LAB=1 is set and a
// missing or unusable /dev/kvm is a failure, never a skip.
//
// It must not create VMs or know any KVM ioctl beyond opening the device: the
// VMM's KVM objects live in vmm/kvm.
package kvmtest
