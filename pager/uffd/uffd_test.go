package uffd

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newRegistered creates a userfaultfd over a fresh anonymous mapping of n
// pages. The test must read only pages it has filled: reading a missing page
// would block this process on a fault nobody serves.
func newRegistered(t *testing.T, pages int) (int, []byte) {
	t.Helper()
	fd, err := New()
	if err != nil {
		t.Skipf("no userfaultfd here: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, ioctls, err := API(fd, 0); err != nil {
		t.Fatal(err)
	} else if ioctls&IoctlBitRegister == 0 {
		t.Fatalf("UFFDIO_API ioctls %#x lack REGISTER", ioctls)
	}
	mem, err := unix.Mmap(-1, 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	ioctls, err := Register(fd, uintptr(unsafe.Pointer(&mem[0])), uint64(len(mem)), ModeMissing)
	if err != nil {
		t.Fatal(err)
	}
	for _, bit := range []uint64{IoctlBitCopy, IoctlBitZeroPage, IoctlBitWake} {
		if ioctls&bit == 0 {
			t.Fatalf("range ioctls %#x lack bit %#x", ioctls, bit)
		}
	}
	return fd, mem
}

func TestCopyZeroPageEEXIST(t *testing.T) {
	fd, mem := newRegistered(t, 4)
	base := uintptr(unsafe.Pointer(&mem[0]))
	src := bytes.Repeat([]byte{0xA5}, 2*PageSize)

	n, err := Copy(fd, base, unsafe.Pointer(&src[0]), uint64(2*PageSize), 0)
	if err != nil || n != int64(2*PageSize) {
		t.Fatalf("Copy = %d, %v; want %d, nil", n, err, 2*PageSize)
	}
	if !bytes.Equal(mem[:2*PageSize], src) {
		t.Fatal("copied pages differ from the source")
	}
	// Page 1 is present: copying pages 1..2 fails on page 1 with EEXIST.
	n, err = Copy(fd, base+uintptr(PageSize), unsafe.Pointer(&src[0]), uint64(2*PageSize), 0)
	if !errors.Is(err, unix.EEXIST) || n != 0 {
		t.Fatalf("Copy over a present page = %d, %v; want 0, EEXIST", n, err)
	}
	// Pages 2..3 via zeropage; then copying 1 page at 3 is EEXIST too.
	n, err = ZeroPage(fd, base+uintptr(2*PageSize), uint64(2*PageSize), 0)
	if err != nil || n != int64(2*PageSize) {
		t.Fatalf("ZeroPage = %d, %v", n, err)
	}
	if !bytes.Equal(mem[2*PageSize:], make([]byte, 2*PageSize)) {
		t.Fatal("zero pages are not zero")
	}
	if _, err := ZeroPage(fd, base+uintptr(3*PageSize), uint64(PageSize), 0); !errors.Is(err, unix.EEXIST) {
		t.Fatalf("ZeroPage over a present page: %v, want EEXIST", err)
	}
	if err := Wake(fd, base, uint64(len(mem))); err != nil {
		t.Fatalf("Wake with no waiters: %v", err)
	}
	if n, err := Read(fd, make([]byte, 4*MsgSize)); n != 0 || err != nil {
		t.Fatalf("Read with nothing pending = %d, %v", n, err)
	}
}

func TestRegisterErrors(t *testing.T) {
	fd, mem := newRegistered(t, 1)
	base := uintptr(unsafe.Pointer(&mem[0]))
	if _, err := Register(fd, base+1, uint64(PageSize), ModeMissing); err == nil {
		t.Fatal("Register of an unaligned range succeeded")
	}
	if _, err := Copy(fd, base, unsafe.Pointer(&mem[0]), 100, 0); err == nil {
		t.Fatal("Copy of a partial page succeeded")
	}
	if err := Unregister(fd, base, uint64(PageSize)); err != nil {
		t.Fatal(err)
	}
	// Unregistered: the page now faults normally (zero-filled anonymous).
	if mem[0] != 0 {
		t.Fatal("unregistered page is not zero")
	}
}

// Without the device, New falls back to the userfaultfd(2) system call.
func TestNewFallsBackToSyscall(t *testing.T) {
	devicePath = "/nonexistent/userfaultfd"
	t.Cleanup(func() { devicePath = DevicePath })
	fd, err := New()
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("userfaultfd(2) not allowed here: %v", err)
		}
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, _, err := API(fd, 0); err != nil {
		t.Fatalf("API on the syscall-made fd: %v", err)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("fd flags %#x, %v: want O_NONBLOCK", fl, err)
	}
}
