package kvm

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// APIVersion is the only KVM API version this package speaks.
const APIVersion = 12

// DevicePath is the KVM system device.
const DevicePath = "/dev/kvm"

// System is an open /dev/kvm.
type System struct {
	fd       int
	mmapSize int
}

// requiredCaps are the capabilities every smolvm VM relies on.
var requiredCaps = []struct {
	cap  int
	name string
}{
	{CapIRQChip, "IRQCHIP"},
	{CapUserMemory, "USER_MEMORY"},
	{CapSetTSSAddr, "SET_TSS_ADDR"},
	{CapExtCPUID, "EXT_CPUID"},
	{CapMPState, "MP_STATE"},
	{CapIRQRouting, "IRQ_ROUTING"},
	{CapPIT2, "PIT2"},
	{CapPITState2, "PIT_STATE2"},
	{CapSetIdentityMapAddr, "SET_IDENTITY_MAP_ADDR"},
	{CapAdjustClock, "ADJUST_CLOCK"},
	{CapVCPUEvents, "VCPU_EVENTS"},
	{CapDebugRegs, "DEBUGREGS"},
	{CapXSAVE, "XSAVE"},
	{CapXCRS, "XCRS"},
	{CapImmediateExit, "IMMEDIATE_EXIT"},
}

// Open opens /dev/kvm, checks the API version and the capabilities smolvm
// needs.
func Open() (*System, error) {
	fd, err := unix.Open(DevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %v", ErrUnavailable, DevicePath, err)
	}
	s := &System{fd: fd}
	if err := s.check(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *System) check() error {
	v, err := ioctl(s.fd, kvmGetAPIVersion, 0)
	if err != nil {
		return fmt.Errorf("kvm: KVM_GET_API_VERSION: %w", err)
	}
	if v != APIVersion {
		return fmt.Errorf("%w: got %d, want %d", ErrAPIVersion, v, APIVersion)
	}
	for _, c := range requiredCaps {
		n, err := s.CheckExtension(c.cap)
		if err != nil {
			return err
		}
		if n <= 0 {
			return fmt.Errorf("%w: KVM_CAP_%s (%d)", ErrMissingCapability, c.name, c.cap)
		}
	}
	sz, err := ioctl(s.fd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if int(sz) < os.Getpagesize() {
		return fmt.Errorf("kvm: KVM_GET_VCPU_MMAP_SIZE returned %d bytes, less than a page", sz)
	}
	s.mmapSize = int(sz)
	return nil
}

// Close closes /dev/kvm. VMs created from it stay usable.
func (s *System) Close() error {
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// CheckExtension returns KVM_CHECK_EXTENSION's answer for a capability: 0
// when absent, otherwise 1 or a capability-specific value.
func (s *System) CheckExtension(capability int) (int, error) {
	if s.fd < 0 {
		return 0, ErrClosed
	}
	n, err := ioctl(s.fd, kvmCheckExtension, uintptr(capability))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %d: %w", capability, err)
	}
	return int(n), nil
}

// maxCPUIDEntries bounds the supported-CPUID buffer growth.
const maxCPUIDEntries = 4096

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: every CPUID leaf KVM can
// offer a guest.
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	if s.fd < 0 {
		return nil, ErrClosed
	}
	for n := 128; n <= maxCPUIDEntries; n *= 2 {
		buf := newCPUIDBuf(n)
		_, err := ioctlPtr(s.fd, kvmGetSupportedCPUID, unsafe.Pointer(&buf[0]))
		if isErrno(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: %w", err)
		}
		return cpuidEntries(buf), nil
	}
	return nil, fmt.Errorf("kvm: KVM_GET_SUPPORTED_CPUID: more than %d entries", maxCPUIDEntries)
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs a vCPU's state
// includes (those KVM saves plus those it emulates).
func (s *System) MSRIndexList() ([]uint32, error) {
	if s.fd < 0 {
		return nil, ErrClosed
	}
	var probe msrListHeader
	_, err := ioctlPtr(s.fd, kvmGetMSRIndexList, unsafe.Pointer(&probe))
	if err != nil && !isErrno(err, unix.E2BIG) {
		return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST: %w", err)
	}
	n := probe.NMSRs
	if n == 0 {
		return nil, nil
	}
	// One uint32 count followed by n uint32 indices.
	buf := make([]uint32, 1+n)
	buf[0] = n
	if _, err := ioctlPtr(s.fd, kvmGetMSRIndexList, unsafe.Pointer(&buf[0])); err != nil {
		return nil, fmt.Errorf("kvm: KVM_GET_MSR_INDEX_LIST (%d entries): %w", n, err)
	}
	got := buf[0]
	if got > n {
		got = n
	}
	return append([]uint32(nil), buf[1:1+got]...), nil
}

// newCPUIDBuf returns a buffer laid out as struct kvm_cpuid2 with room for n
// entries, nent set to n, backed by uint64s so that it is 8-byte aligned.
func newCPUIDBuf(n int) []byte {
	hdr := int(unsafe.Sizeof(cpuidHeader{}))
	ent := int(unsafe.Sizeof(CPUIDEntry{}))
	words := make([]uint64, (hdr+n*ent+7)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), hdr+n*ent)
	(*cpuidHeader)(unsafe.Pointer(&buf[0])).NEnt = uint32(n)
	return buf
}

// cpuidEntries copies the entries out of a kvm_cpuid2 buffer.
func cpuidEntries(buf []byte) []CPUIDEntry {
	hdr := int(unsafe.Sizeof(cpuidHeader{}))
	ent := int(unsafe.Sizeof(CPUIDEntry{}))
	n := int((*cpuidHeader)(unsafe.Pointer(&buf[0])).NEnt)
	if max := (len(buf) - hdr) / ent; n > max {
		n = max
	}
	out := make([]CPUIDEntry, n)
	for i := range out {
		out[i] = *(*CPUIDEntry)(unsafe.Pointer(&buf[hdr+i*ent]))
	}
	return out
}

// cpuidBufFrom lays out entries as struct kvm_cpuid2.
func cpuidBufFrom(entries []CPUIDEntry) []byte {
	buf := newCPUIDBuf(len(entries))
	hdr := int(unsafe.Sizeof(cpuidHeader{}))
	ent := int(unsafe.Sizeof(CPUIDEntry{}))
	for i, e := range entries {
		*(*CPUIDEntry)(unsafe.Pointer(&buf[hdr+i*ent])) = e
	}
	return buf
}

// Module names the kernel module behind /dev/kvm: "kvm_intel" or "kvm_amd"
// for hardware virtualization, "kvm_pvm" for the software PVM backend (which
// runs only PVM-enabled guest kernels), or "" when none is loaded.
func Module() string {
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm"} {
		if fi, err := os.Stat("/sys/module/" + m); err == nil && fi.IsDir() {
			return m
		}
	}
	return ""
}
