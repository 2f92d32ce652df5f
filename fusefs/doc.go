// Package fusefs serves a bundle as a read-only FUSE filesystem (config.json,
// kernel, initrd, memory, disk/NAME, .stats) on hanwen/go-fuse/v2, reading
// frames lazily through a shared chunkstore cache.
//
// It must never read its own mount from the serving process (a fault on
// memory the process itself serves can deadlock the Go runtime).
package fusefs
