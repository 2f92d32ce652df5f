// Package snapshot turns a running smolvm machine into a .smolmachine
// bundle and back: the encoding of the bundle's `state` artifact (vmm.State,
// the machine's configuration and the CPU identity the guest saw, behind a
// magic, a version and a SHA-256; state.go, cpu.go), the host check a
// restore must pass (CheckHost), and the save side (Take: pause, save, pack
// guest RAM, disks, kernel, initrd and state into one bundle, resume or stop).
// The restore side (restore*.go, daemon.go, record.go) builds a clone from a
// bundle: the bundle's smolmount daemon found or started (EnsureDaemon),
// guest memory by userfaultfd, a private mapping of the mount, or read eagerly
// (Restore), the clone's identity through its agent (Ready), and the working
// set recorded into the bundle (RecordWorkingSet).
//
// It must not touch KVM directly (vmm does), parse the bundle format
// (format and chunkstore do), or serve guest memory (smolmount and pager do):
// the process that writes a snapshot only reads its own machine's memory.
package snapshot
