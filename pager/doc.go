// Package pager demand-pages guest memory from a bundle's memory image:
// userfaultfd (created by the VMM, served by the bundle's daemon over a unix
// socket, docs/PAGER.md) or a MAP_PRIVATE mapping of the FUSE-backed memory
// file; and working-set recording and prefetch.
//
// Server is the daemon side (smolmount hosts it), Client the VMM side,
// MapFile the mmap mode; package uffd wraps the kernel ABI.
//
// A process must never fault on memory it serves: the daemon never touches
// guest memory, and the VMM's Go code must not touch guest memory that may
// still be missing (faults inside KVM_RUN are fine). A fault that cannot be
// served is reported, never answered with zeros.
package pager
