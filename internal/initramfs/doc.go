// Package initramfs builds gzip-compressed newc cpio archives that Linux
// unpacks as its initial root filesystem.
//
// An Archive is described in memory (directories, regular files from bytes or
// host paths, symlinks, device nodes), then written deterministically: entries
// sorted by path, missing parent directories added, owner root, mtime 0,
// inode numbers in path order, a gzip header without name or time. The same
// inputs give the same bytes, so Digest names a cache entry (Cache).
//
// Helpers add a static busybox with its applet symlinks (AddBusybox) and the
// kernel modules a guest needs, resolved with their dependencies from
// /lib/modules/KVER/modules.dep into load order (Modules, AddModules); .ko.gz,
// .ko.zst and .ko.xz files are stored decompressed so that any insmod loads
// them.
//
// It must not know what a particular guest's /init does: vmm/guest and
// internal/lab own their init scripts and module lists.
package initramfs
