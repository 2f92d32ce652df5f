// Package guest provides smolvm's default guest: Debian's cloud kernel
// (linux-image-cloud-amd64) and an initramfs the project builds, used
// whenever `smolvm boot` is given no --kernel / --initrd.
//
// The initramfs holds busybox-static, the cloud kernel's modules for virtio
// PCI, block, net, rng, console and vsock (with their dependencies, in load
// order; ext4 is built in), and /init (init.sh, embedded). /init mounts
// proc, sysfs and devtmpfs, loads the modules, starts the guest agent when
// one is present, prints ReadyMarker on the console, then either runs the
// script passed base64-encoded in the kernel parameter smolvm.cmd= (see
// CmdParam) and powers off, or starts a shell on the console and powers off
// when it exits.
//
// Guest agent hook: Options.Agent names a host binary that is installed as
// /usr/sbin/smolvm-agent; /init starts it in the background before printing
// ReadyMarker. DefaultAgent finds the agent smolvm boot installs:
// $SMOLVM_AGENT, or smolvm-agent next to the smolvm executable (make build
// puts it in bin/); it must be static (CGO_ENABLED=0). See docs/AGENT.md.
//
// It must not know how a VM runs: it only finds and builds files.
package guest
