// Package fusefs serves an opened bundle as a read-only FUSE filesystem on
// hanwen/go-fuse/v2: config.json, kernel, initrd, memory, disk/NAME, state
// (when the bundle has one) and .stats (JSON counters, fresh on every open).
// Image files are read lazily through chunkstore.Image, so only the frames a
// read touches are fetched, verified and cached; a frame that fails
// verification makes that read fail with EIO while every other frame keeps
// being served.
//
// It also owns the mount's lifecycle outside the serving process: finding a
// mount in /proc/self/mountinfo, the daemon's record file, and Unmount, which
// ends a live daemon or cleans the stale mount of a dead one (fusectl abort,
// then a lazy unmount), every wait bounded.
//
// It must never read, stat or map its own mount from the serving process: a
// page fault on memory the process itself serves can deadlock the Go runtime
// (see docs/SMOLMOUNT.md). It knows nothing of frames, digests or
// compression beyond the chunkstore.Image interface.
package fusefs
