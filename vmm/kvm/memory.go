package kvm

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory is a host mapping that backs guest RAM. Anonymous memory comes from
// AllocMemory; the pager maps file- or userfaultfd-backed memory elsewhere and
// wraps it with WrapMemory.
type Memory struct {
	data  []byte
	owned bool
}

// AllocMemory maps size bytes of private anonymous memory (zero-filled,
// populated on first touch). size must be a positive multiple of the page
// size.
func AllocMemory(size int64) (*Memory, error) {
	if size <= 0 || size%int64(os.Getpagesize()) != 0 {
		return nil, fmt.Errorf("kvm: guest memory size %d is not a positive multiple of the page size", size)
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("kvm: mmap %d bytes of guest memory: %w", size, err)
	}
	return &Memory{data: b, owned: true}, nil
}

// WrapMemory wraps a mapping owned by someone else; Close does not unmap it.
func WrapMemory(b []byte) *Memory { return &Memory{data: b} }

// Bytes is the mapping. Only valid until Close.
func (m *Memory) Bytes() []byte { return m.data }

// Len is the mapping's size in bytes.
func (m *Memory) Len() int64 { return int64(len(m.data)) }

// addr is the host virtual address of the mapping.
func (m *Memory) addr() uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(m.data))) }

// Close unmaps memory this package mapped. Unregister its slots (or close the
// VM) first.
func (m *Memory) Close() error {
	if m.data == nil {
		return nil
	}
	var err error
	if m.owned {
		err = unix.Munmap(m.data)
	}
	m.data = nil
	return err
}
