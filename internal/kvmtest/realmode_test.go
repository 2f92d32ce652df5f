package kvmtest_test

import (
	"fmt"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// This file proves the lab: a tiny real-mode guest on raw KVM ioctls. The
// VMM's real KVM objects live in vmm/kvm; these constants are test-only.
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46 // _IOW(0xAE, 0x46, 32 bytes)
	kvmRun                 = 0xAE80
	kvmGetRegs             = 0x8090AE81 // _IOR(0xAE, 0x81, 144 bytes)
	kvmSetRegs             = 0x4090AE82
	kvmGetSregs            = 0x8138AE83 // _IOR(0xAE, 0x83, 312 bytes)
	kvmSetSregs            = 0x4138AE84

	exitIO  = 2
	exitHLT = 5
)

type userMemoryRegion struct {
	Slot, Flags                   uint32
	GuestPhysAddr, MemorySize, UA uint64
}

type regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

type segment struct {
	Base                         uint64
	Limit                        uint32
	Selector                     uint16
	Type, Present, DPL, DB, S, L uint8
	G, AVL, Unusable, Padding    uint8
}

type dtable struct {
	Base    uint64
	Limit   uint16
	Padding [3]uint16
}

type sregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT segment
	GDT, IDT                        dtable
	CR0, CR2, CR3, CR4, CR8, EFER   uint64
	APICBase                        uint64
	InterruptBitmap                 [4]uint64
}

func TestIoctlStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_userspace_memory_region", unsafe.Sizeof(userMemoryRegion{}), 32},
		{"kvm_regs", unsafe.Sizeof(regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(segment{}), 24},
		{"kvm_sregs", unsafe.Sizeof(sregs{}), 312},
	} {
		if c.got != c.want {
			t.Errorf("sizeof(%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// TestKVMRealModeGuest runs 16-bit code that adds two registers, turns the
// sum into an ASCII digit, writes it to port 0x3f8 and halts.
func TestKVMRealModeGuest(t *testing.T) {
	kvmtest.Require(t)
	t.Logf("running on %s", kvmtest.Label())

	kvm, err := os.OpenFile(kvmtest.DevicePath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kvm.Close() })
	kfd := int(kvm.Fd())

	v, err := ioctl(kfd, kvmGetAPIVersion, 0)
	if err != nil || v != 12 {
		t.Fatalf("KVM_GET_API_VERSION = %d, %v; want 12", v, err)
	}
	vmfd, err := ioctl(kfd, kvmCreateVM, 0)
	if err != nil {
		t.Fatalf("KVM_CREATE_VM: %v", err)
	}
	t.Cleanup(func() { unix.Close(int(vmfd)) })

	const memSize = 0x10000
	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	code := []byte{
		0x00, 0xd8, // add al, bl
		0x04, '0', // add al, '0'
		0xba, 0xf8, 0x03, // mov dx, 0x3f8
		0xee, // out dx, al
		0xf4, // hlt
	}
	const entry = 0x1000
	copy(mem[entry:], code)
	region := userMemoryRegion{MemorySize: memSize, UA: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(int(vmfd), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		t.Fatalf("KVM_SET_USER_MEMORY_REGION: %v", err)
	}

	vcpufd, err := ioctl(int(vmfd), kvmCreateVCPU, 0)
	if err != nil {
		t.Fatalf("KVM_CREATE_VCPU: %v", err)
	}
	t.Cleanup(func() { unix.Close(int(vcpufd)) })
	runSize, err := ioctl(kfd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		t.Fatalf("KVM_GET_VCPU_MMAP_SIZE: %v", err)
	}
	run, err := unix.Mmap(int(vcpufd), 0, int(runSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap kvm_run: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(run) })

	var s sregs
	if _, err := ioctl(int(vcpufd), kvmGetSregs, uintptr(unsafe.Pointer(&s))); err != nil {
		t.Fatalf("KVM_GET_SREGS: %v", err)
	}
	s.CS.Base, s.CS.Selector = 0, 0
	if _, err := ioctl(int(vcpufd), kvmSetSregs, uintptr(unsafe.Pointer(&s))); err != nil {
		t.Fatalf("KVM_SET_SREGS: %v", err)
	}
	r := regs{RIP: entry, RAX: 2, RBX: 3, RFLAGS: 2}
	if _, err := ioctl(int(vcpufd), kvmSetRegs, uintptr(unsafe.Pointer(&r))); err != nil {
		t.Fatalf("KVM_SET_REGS: %v", err)
	}

	var out []byte
	for i := 0; i < 100; i++ { // bounded: the guest needs two exits
		if _, err := ioctl(int(vcpufd), kvmRun, 0); err != nil {
			t.Fatalf("KVM_RUN: %v", err)
		}
		reason := *(*uint32)(unsafe.Pointer(&run[8]))
		switch reason {
		case exitIO:
			dir, size := run[32], run[33]
			port := *(*uint16)(unsafe.Pointer(&run[34]))
			count := *(*uint32)(unsafe.Pointer(&run[36]))
			off := *(*uint64)(unsafe.Pointer(&run[40]))
			if dir != 1 || size != 1 || port != 0x3f8 || count != 1 {
				t.Fatalf("unexpected I/O exit: dir=%d size=%d port=%#x count=%d", dir, size, port, count)
			}
			out = append(out, run[off])
		case exitHLT:
			if got := string(out); got != "5" {
				t.Fatalf("guest wrote %q to port 0x3f8, want %q", got, "5")
			}
			if _, err := ioctl(int(vcpufd), kvmGetRegs, uintptr(unsafe.Pointer(&r))); err != nil {
				t.Fatalf("KVM_GET_REGS: %v", err)
			}
			if r.RIP != entry+uint64(len(code)) {
				t.Fatalf("halted at rip %#x, want %#x", r.RIP, entry+len(code))
			}
			t.Logf("guest wrote %q and halted at rip %#x", out, r.RIP)
			return
		default:
			t.Fatalf("unexpected exit reason %d", reason)
		}
	}
	t.Fatal(fmt.Errorf("guest did not halt after 100 exits"))
}
