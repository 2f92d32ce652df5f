// Package lab runs a command inside the KVM lab: a Linux VM under QEMU's
// software emulation (TCG, -cpu max, which offers AMD SVM) in which the stock
// Debian kernel loads kvm_amd, so the command gets a working /dev/kvm on
// machines that have no hardware KVM. docs/LAB.md describes it.
//
// The lab VM ("level 1") boots Debian's generic kernel with an initramfs
// built here (busybox-static, the modules for 9p, virtio, fuse, overlay and
// kvm_amd, and lab_init.sh). Its root is an overlay: the host's / over 9p,
// read-only, below a tmpfs, so every host path is visible at its usual place
// and writable (writes stay in the VM's RAM). Options.Shares are host
// directories mounted writable at their own paths, so results come back. The
// command's stdout and stderr go to the second serial port, which is QEMU's
// stdout; the kernel console goes to a log file whose tail is shown when the
// lab fails. A final marker line carrying a per-run nonce gives the exit
// status.
//
// It must not decide what runs inside: scripts/test-kvm.sh and callers
// choose the command. It never leaves QEMU running: a timeout or a canceled
// context kills it.
package lab
