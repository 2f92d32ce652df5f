// Package blk is the virtio-blk device (virtio 1.x, section 5.2): one
// request queue served on the device's own goroutine (a virtio.Worker), reads
// and writes against a disk.Disk, FLUSH, GET_ID, and VIRTIO_BLK_F_RO for a
// read-only disk. A request the disk cannot serve (past the end, a write to a
// read-only disk, an I/O error) completes with VIRTIO_BLK_S_IOERR; an unknown
// request type with VIRTIO_BLK_S_UNSUPP; a chain too malformed to carry a
// status byte is a device error (DEVICE_NEEDS_RESET).
//
// It must not know about PCI, KVM or how disks are stored.
package blk
