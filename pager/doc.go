// Package pager demand-pages guest memory: userfaultfd (created by the VMM,
// served by the bundle's daemon over a unix socket) or a MAP_PRIVATE mapping
// of the FUSE-backed memory file; and working-set recording and prefetch.
//
// The process that serves faults must never touch the memory it serves.
package pager
