// Package uffd is a thin, typed wrapper over the Linux userfaultfd ABI:
// creating a userfaultfd (through /dev/userfaultfd, falling back to the
// system call), the API handshake, registering ranges, and resolving faults
// with UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_WAKE; and decoding fault
// messages.
//
// It keeps every kernel struct and ioctl number in abi.go, checked by size
// tests. It must not touch memory registered on a userfaultfd it serves, and
// it knows nothing about bundles, frames or sockets (package pager does).
package uffd
