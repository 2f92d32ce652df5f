// Package disk holds the backends behind a VM's virtio-blk devices: a raw
// image file written in place, the same file read-only, and a copy-on-write
// Overlay that never writes its base (a file, or any io.ReaderAt such as a
// bundle's disk image) and keeps the guest's writes in a sparse overlay file
// with a written-block map that is persisted atomically on Flush. The
// overlay's layout is specified in docs/DISK.md so a snapshot can read it on
// its own.
//
// It must not know about virtio, guest memory or KVM; callers serialise
// nothing (every Disk is safe for concurrent use).
package disk
