// Package pagemap reads the kernel's per-page tables of a process's memory:
// /proc/PID/pagemap entries (Documentation/admin-guide/mm/pagemap.rst: a
// 64-bit little-endian entry per virtual page saying whether it is present
// or swapped, and its page frame number) and the same-shaped
// /proc/kpageflags. snapshot uses it to find the guest pages a clone ever
// populated; pager to follow prefetched pages to their frames' flags.
//
// It only reads through an io.ReaderAt it is given: it never opens, maps or
// touches the memory it describes (reading pagemap does not fault pages in).
package pagemap
