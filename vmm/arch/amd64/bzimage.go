package amd64

import (
	"encoding/binary"
	"fmt"
)

// Setup header offsets inside a bzImage (and inside boot_params, which embeds
// the header at the same offsets), per Documentation/arch/x86/boot.rst.
const (
	hdrStart          = 0x1F1 // setup_sects, first field of the header
	offSetupSects     = 0x1F1
	offBootFlag       = 0x1FE
	offJump           = 0x200
	offHeaderMagic    = 0x202
	offVersion        = 0x206
	offTypeOfLoader   = 0x210
	offLoadFlags      = 0x211
	offRamdiskImage   = 0x218
	offRamdiskSize    = 0x21C
	offHeapEndPtr     = 0x224
	offCmdLinePtr     = 0x228
	offInitrdAddrMax  = 0x22C
	offKernelAlign    = 0x230
	offRelocatable    = 0x234
	offXLoadFlags     = 0x236
	offCmdlineSize    = 0x238
	offPrefAddress    = 0x258
	offInitSize       = 0x260
	hdrMaxEnd         = 0x290 // boot_params.edd_mbr_sig_buffer follows the header
	minHeaderEnd      = offInitSize + 4
	bootFlagMagic     = 0xAA55
	headerMagic       = 0x53726448 // "HdrS"
	minProtocol       = 0x020C     // 2.12: xloadflags
	sectorSize        = 512
	defaultSetupSects = 4
)

// loadflags and xloadflags bits.
const (
	LoadedHigh    = 1 << 0 // protected-mode code loaded at 0x100000
	CanUseHeap    = 1 << 7 // heap_end_ptr is valid
	XLFKernel64   = 1 << 0 // has the 64-bit entry point at +0x200
	XLFCanAbove4G = 1 << 1 // kernel/initrd/cmdline may live above 4 GiB
)

// BzImage is a parsed Linux bzImage: its setup header fields and the
// protected-mode kernel that gets loaded into guest memory.
type BzImage struct {
	// Protocol is the boot protocol version (0x020F = 2.15).
	Protocol uint16
	// SetupSects is the number of 512-byte setup sectors after the boot
	// sector (a stored 0 means 4).
	SetupSects int
	LoadFlags  uint8
	XLoadFlags uint16
	// Relocatable kernels may be loaded at any KernelAlignment-aligned
	// address.
	Relocatable     bool
	KernelAlignment uint32
	// PrefAddress is the preferred load address of a relocatable kernel.
	PrefAddress uint64
	// InitSize is the memory the kernel needs from its load address until
	// it has set up its own page tables.
	InitSize uint32
	// InitrdAddrMax is the highest address the initrd may occupy (its last
	// byte).
	InitrdAddrMax uint32
	// CmdlineSize is the longest command line the kernel takes, without
	// the NUL.
	CmdlineSize uint32
	// Header holds the setup header bytes from offset 0x1F1 of the file, to
	// be copied into boot_params at the same offset.
	Header []byte
	// Kernel is the protected-mode kernel (the file after the setup
	// sectors). It aliases the slice given to ParseBzImage.
	Kernel []byte
}

// ParseBzImage parses a bzImage file's setup header. It checks the boot
// flag, the "HdrS" magic, the protocol version (>= 2.12) and the 64-bit entry
// point (XLF_KERNEL_64), and that the file holds the setup sectors and a
// protected-mode kernel. It never panics on bad input.
func ParseBzImage(data []byte) (*BzImage, error) {
	le := binary.LittleEndian
	if len(data) < offHeaderMagic+4 {
		return nil, fmt.Errorf("amd64: bzImage: file is %d bytes, too short for a setup header: %w", len(data), ErrNotBzImage)
	}
	if got := le.Uint16(data[offBootFlag:]); got != bootFlagMagic {
		return nil, fmt.Errorf("amd64: bzImage: boot flag at %#x is %#04x, want %#04x: %w", offBootFlag, got, bootFlagMagic, ErrNotBzImage)
	}
	if got := le.Uint32(data[offHeaderMagic:]); got != headerMagic {
		return nil, fmt.Errorf("amd64: bzImage: header magic at %#x is %#08x, want %#08x (\"HdrS\"): %w", offHeaderMagic, got, headerMagic, ErrNotBzImage)
	}
	// The header runs to 0x202 + the jump's 8-bit displacement.
	hdrEnd := min(offHeaderMagic+int(data[offJump+1]), hdrMaxEnd)
	if len(data) < minHeaderEnd {
		return nil, fmt.Errorf("amd64: bzImage: file is %d bytes, too short for a protocol 2.12 header (%#x): %w", len(data), minHeaderEnd, ErrNotBzImage)
	}
	version := le.Uint16(data[offVersion:])
	if version < minProtocol {
		return nil, fmt.Errorf("amd64: bzImage: boot protocol %d.%02d, need 2.12 or later: %w", version>>8, version&0xFF, ErrProtocol)
	}
	if hdrEnd < minHeaderEnd {
		return nil, fmt.Errorf("amd64: bzImage: setup header ends at %#x (jump at %#x), protocol %d.%02d needs %#x: %w",
			hdrEnd, offJump, version>>8, version&0xFF, minHeaderEnd, ErrNotBzImage)
	}
	b := &BzImage{
		Protocol:        version,
		SetupSects:      int(data[offSetupSects]),
		LoadFlags:       data[offLoadFlags],
		XLoadFlags:      le.Uint16(data[offXLoadFlags:]),
		Relocatable:     data[offRelocatable] != 0,
		KernelAlignment: le.Uint32(data[offKernelAlign:]),
		PrefAddress:     le.Uint64(data[offPrefAddress:]),
		InitSize:        le.Uint32(data[offInitSize:]),
		InitrdAddrMax:   le.Uint32(data[offInitrdAddrMax:]),
		CmdlineSize:     le.Uint32(data[offCmdlineSize:]),
	}
	if b.SetupSects == 0 {
		b.SetupSects = defaultSetupSects
	}
	if b.XLoadFlags&XLFKernel64 == 0 {
		return nil, fmt.Errorf("amd64: bzImage: xloadflags %#04x lack XLF_KERNEL_64 (no 64-bit entry point): %w", b.XLoadFlags, ErrProtocol)
	}
	if b.LoadFlags&LoadedHigh == 0 {
		return nil, fmt.Errorf("amd64: bzImage: loadflags %#02x lack LOADED_HIGH (a zImage, not a bzImage): %w", b.LoadFlags, ErrNotBzImage)
	}
	if b.Relocatable && (b.KernelAlignment == 0 || b.KernelAlignment&(b.KernelAlignment-1) != 0) {
		return nil, fmt.Errorf("amd64: bzImage: kernel_alignment %#x is not a power of two: %w", b.KernelAlignment, ErrNotBzImage)
	}
	kernelOff := (b.SetupSects + 1) * sectorSize
	if kernelOff >= len(data) {
		return nil, fmt.Errorf("amd64: bzImage: %d setup sectors end at %#x but the file is %#x bytes (no protected-mode kernel): %w",
			b.SetupSects, kernelOff, len(data), ErrNotBzImage)
	}
	b.Kernel = data[kernelOff:]
	if uint64(b.InitSize) < uint64(len(b.Kernel)) {
		return nil, fmt.Errorf("amd64: bzImage: init_size %#x is smaller than the %#x-byte protected-mode kernel: %w",
			b.InitSize, len(b.Kernel), ErrNotBzImage)
	}
	b.Header = data[hdrStart:hdrEnd]
	return b, nil
}

// LoadAddr returns where the protected-mode kernel is loaded: PrefAddress
// for a relocatable kernel that prefers an address above KernelAddr (Linux
// would move itself there anyway, and loading it there saves the copy),
// otherwise KernelAddr.
func (b *BzImage) LoadAddr() uint64 {
	if b.Relocatable && b.PrefAddress > KernelAddr && b.PrefAddress%uint64(b.KernelAlignment) == 0 {
		return b.PrefAddress
	}
	return KernelAddr
}

// MemoryEnd returns the first address past the memory the kernel needs
// while it decompresses and starts: init_size bytes from its runtime address,
// the larger of the load address and PrefAddress (startup_64 never
// decompresses below LOAD_PHYSICAL_ADDR, which pref_address reports).
func (b *BzImage) MemoryEnd() uint64 {
	return max(b.LoadAddr(), b.PrefAddress) + uint64(b.InitSize)
}
