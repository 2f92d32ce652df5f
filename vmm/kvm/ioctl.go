package kvm

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux ioctl request encoding (asm-generic/ioctl.h): direction in bits
// 30-31, argument size in bits 16-29, type in bits 8-15, number in bits 0-7.
const (
	iocNone  = 0
	iocWrite = 1
	iocRead  = 2
	kvmio    = 0xAE
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<30 | size<<16 | kvmio<<8 | nr
}

func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }
func sizeOf[T any]() uintptr        { var v T; return unsafe.Sizeof(v) }

// KVM ioctl requests, computed from their kernel definitions.
var (
	// System ioctls (on /dev/kvm).
	kvmGetAPIVersion     = io(0x00)
	kvmCreateVM          = io(0x01)
	kvmGetMSRIndexList   = iowr(0x02, sizeOf[msrListHeader]())
	kvmCheckExtension    = io(0x03)
	kvmGetVCPUMmapSize   = io(0x04)
	kvmGetSupportedCPUID = iowr(0x05, sizeOf[cpuidHeader]())

	// VM ioctls.
	kvmCreateVCPU          = io(0x41)
	kvmSetUserMemoryRegion = iow(0x46, sizeOf[userspaceMemoryRegion]())
	kvmSetTSSAddr          = io(0x47)
	kvmSetIdentityMapAddr  = iow(0x48, 8)
	kvmCreateIRQChip       = io(0x60)
	kvmIRQLine             = iow(0x61, sizeOf[irqLevel]())
	kvmGetIRQChip          = iowr(0x62, sizeOf[irqchip]())
	kvmSetIRQChip          = ior(0x63, sizeOf[irqchip]())
	kvmSetGSIRouting       = iow(0x6a, sizeOf[irqRoutingHeader]())
	kvmIRQFD               = iow(0x76, sizeOf[irqfdArgs]())
	kvmCreatePIT2          = iow(0x77, sizeOf[pitConfig]())
	kvmIOEventFD           = iow(0x79, sizeOf[ioeventfdArgs]())
	kvmSetClock            = iow(0x7b, sizeOf[ClockData]())
	kvmGetClock            = ior(0x7c, sizeOf[ClockData]())
	kvmGetPIT2             = ior(0x9f, sizeOf[PITState2]())
	kvmSetPIT2             = iow(0xa0, sizeOf[PITState2]())
	kvmSignalMSI           = iow(0xa5, sizeOf[msiArgs]())

	// vCPU ioctls.
	kvmRun           = io(0x80)
	kvmGetRegs       = ior(0x81, sizeOf[Regs]())
	kvmSetRegs       = iow(0x82, sizeOf[Regs]())
	kvmGetSregs      = ior(0x83, sizeOf[Sregs]())
	kvmSetSregs      = iow(0x84, sizeOf[Sregs]())
	kvmGetMSRs       = iowr(0x88, sizeOf[msrsHeader]())
	kvmSetMSRs       = iow(0x89, sizeOf[msrsHeader]())
	kvmGetFPU        = ior(0x8c, sizeOf[FPU]())
	kvmSetFPU        = iow(0x8d, sizeOf[FPU]())
	kvmGetLAPIC      = ior(0x8e, sizeOf[LAPICState]())
	kvmSetLAPIC      = iow(0x8f, sizeOf[LAPICState]())
	kvmSetCPUID2     = iow(0x90, sizeOf[cpuidHeader]())
	kvmGetCPUID2     = iowr(0x91, sizeOf[cpuidHeader]())
	kvmGetMPState    = ior(0x98, sizeOf[mpState]())
	kvmSetMPState    = iow(0x99, sizeOf[mpState]())
	kvmGetVCPUEvents = ior(0x9f, sizeOf[VCPUEvents]())
	kvmSetVCPUEvents = iow(0xa0, sizeOf[VCPUEvents]())
	kvmGetDebugRegs  = ior(0xa1, sizeOf[DebugRegs]())
	kvmSetDebugRegs  = iow(0xa2, sizeOf[DebugRegs]())
	kvmSetTSCKHz     = io(0xa2)
	kvmGetTSCKHz     = io(0xa3)
	kvmGetXSAVE      = ior(0xa4, xsaveMinSize)
	kvmSetXSAVE      = iow(0xa5, xsaveMinSize)
	kvmGetXCRS       = ior(0xa6, sizeOf[XCRS]())
	kvmSetXCRS       = iow(0xa7, sizeOf[XCRS]())
	kvmGetXSAVE2     = ior(0xcf, xsaveMinSize)
)

// Capabilities (KVM_CAP_*) this package checks for.
const (
	CapIRQChip            = 0
	CapUserMemory         = 3
	CapSetTSSAddr         = 4
	CapExtCPUID           = 7
	CapNrVCPUs            = 9
	CapNrMemslots         = 10
	CapPIT                = 11
	CapMPState            = 14
	CapIRQRouting         = 25
	CapIRQFD              = 32
	CapPIT2               = 33
	CapPITState2          = 35
	CapIOEventFD          = 36
	CapSetIdentityMapAddr = 37
	CapAdjustClock        = 39
	CapVCPUEvents         = 41
	CapDebugRegs          = 50
	CapXSAVE              = 55
	CapXCRS               = 56
	CapTSCControl         = 60
	CapGetTSCKHz          = 61
	CapMaxVCPUs           = 66
	CapImmediateExit      = 136
	CapXSAVE2             = 208
)

// ioctl issues a request whose argument is an integer (or nothing), retrying
// when a signal interrupts it.
func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlPtr issues a request whose argument is a pointer to a structure,
// retrying when a signal interrupts it.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// isErrno reports whether err is the given errno.
func isErrno(err error, e unix.Errno) bool { return errors.Is(err, e) }
