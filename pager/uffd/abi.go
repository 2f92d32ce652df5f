package uffd

import "unsafe"

// Kernel ABI of userfaultfd (include/uapi/linux/userfaultfd.h). Every struct
// the ioctls take is declared here, with its size checked in abi_test.go.

// apiVersion is UFFD_API, the only API version the kernel accepts.
const apiVersion = 0xAA

// ioctl numbers: _IOC(dir, 0xAA, nr, size) with dir 3 = read|write, 2 = read
// (from the kernel's point of view: userspace writes).
const (
	ioctlNew        = 0xAA00     // USERFAULTFD_IOC_NEW = _IO(0xAA, 0x00), on /dev/userfaultfd
	ioctlAPI        = 0xC018AA3F // UFFDIO_API = _IOWR(0xAA, 0x3F, struct uffdio_api)
	ioctlRegister   = 0xC020AA00 // UFFDIO_REGISTER = _IOWR(0xAA, 0x00, struct uffdio_register)
	ioctlUnregister = 0x8010AA01 // UFFDIO_UNREGISTER = _IOR(0xAA, 0x01, struct uffdio_range)
	ioctlWake       = 0x8010AA02 // UFFDIO_WAKE = _IOR(0xAA, 0x02, struct uffdio_range)
	ioctlCopy       = 0xC028AA03 // UFFDIO_COPY = _IOWR(0xAA, 0x03, struct uffdio_copy)
	ioctlZeroPage   = 0xC020AA04 // UFFDIO_ZEROPAGE = _IOWR(0xAA, 0x04, struct uffdio_zeropage)
)

// Bits of uffdio_api.ioctls / uffdio_register.ioctls: which ioctls the
// kernel offers (bit n = ioctl number n).
const (
	IoctlBitRegister   = 1 << 0x00
	IoctlBitUnregister = 1 << 0x01
	IoctlBitWake       = 1 << 0x02
	IoctlBitCopy       = 1 << 0x03
	IoctlBitZeroPage   = 1 << 0x04
	IoctlBitAPI        = 1 << 0x3F
)

// Feature flags for API (UFFD_FEATURE_*). Only those this project may ask
// for are named.
const (
	FeatureEventFork   = 1 << 1
	FeatureEventRemap  = 1 << 2
	FeatureEventRemove = 1 << 3
	FeatureEventUnmap  = 1 << 6
	FeatureSigbus      = 1 << 7
	FeatureThreadID    = 1 << 8
)

// Register modes (UFFDIO_REGISTER_MODE_*).
const (
	ModeMissing = 1 << 0
	ModeWP      = 1 << 1
	ModeMinor   = 1 << 2
)

// Copy and zeropage modes.
const (
	CopyModeDontWake     = 1 << 0 // UFFDIO_COPY_MODE_DONTWAKE
	ZeroPageModeDontWake = 1 << 0 // UFFDIO_ZEROPAGE_MODE_DONTWAKE
)

// Event types of uffd_msg.event (UFFD_EVENT_*).
const (
	EventPagefault = 0x12
	EventFork      = 0x13
	EventRemap     = 0x14
	EventRemove    = 0x15
	EventUnmap     = 0x16
)

// Pagefault flags (uffd_msg.arg.pagefault.flags).
const (
	PagefaultFlagWrite = 1 << 0
	PagefaultFlagWP    = 1 << 1
	PagefaultFlagMinor = 1 << 2
)

// MsgSize is sizeof(struct uffd_msg): what one read(2) of a userfaultfd
// returns per event.
const MsgSize = 32

type uffdioAPI struct {
	API      uint64
	Features uint64
	Ioctls   uint64
}

type uffdioRange struct {
	Start uint64
	Len   uint64
}

type uffdioRegister struct {
	Range  uffdioRange
	Mode   uint64
	Ioctls uint64
}

type uffdioCopy struct {
	Dst  uint64
	Src  uint64
	Len  uint64
	Mode uint64
	Copy int64 // out: bytes copied, or a negated errno
}

type uffdioZeroPage struct {
	Range    uffdioRange
	Mode     uint64
	ZeroPage int64 // out: bytes zeroed, or a negated errno
}

// Sizes the kernel's ioctl numbers encode; abi_test.go checks the Go structs
// match them.
var abiSizes = map[string][2]uintptr{
	"uffdio_api":      {unsafe.Sizeof(uffdioAPI{}), 24},
	"uffdio_range":    {unsafe.Sizeof(uffdioRange{}), 16},
	"uffdio_register": {unsafe.Sizeof(uffdioRegister{}), 32},
	"uffdio_copy":     {unsafe.Sizeof(uffdioCopy{}), 40},
	"uffdio_zeropage": {unsafe.Sizeof(uffdioZeroPage{}), 32},
}
