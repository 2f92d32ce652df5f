package amd64

import (
	"encoding/binary"
	"fmt"
)

// boot_params ("zero page") offsets, per Documentation/arch/x86/zero-page.rst.
const (
	ZeroPageSize = 0x1000

	bpACPIRSDPAddr    = 0x070
	bpExtRamdiskImage = 0x0C0
	bpExtRamdiskSize  = 0x0C4
	bpExtCmdLinePtr   = 0x0C8
	bpE820Entries     = 0x1E8
	bpE820Table       = 0x2D0
	e820EntrySize     = 20

	// typeOfLoaderUndefined is type_of_loader 0xFF: a boot loader without
	// an assigned id.
	typeOfLoaderUndefined = 0xFF
	// heapEndPtr is the protocol's recommended heap_end_ptr for a bzImage
	// (0xFE00 minus the 0x200 of the boot sector); the 64-bit entry never
	// runs the real-mode code that uses it.
	heapEndPtr = 0xFE00 - 0x200
)

// BootParams is what WriteBootParams writes into the zero page.
type BootParams struct {
	// Header is the setup header copied from the bzImage (BzImage.Header).
	Header      []byte
	CmdlineAddr uint64
	InitrdAddr  uint64
	InitrdSize  uint64
	E820        []E820Entry
	// RSDPAddr is the ACPI RSDP (acpi_rsdp_addr, protocol 2.14); 0 omits it.
	RSDPAddr uint64
}

// WriteBootParams clears the zero page at addr in mem and fills it: the
// setup header from the bzImage with type_of_loader 0xFF, CAN_USE_HEAP and
// heap_end_ptr, cmd_line_ptr, the ramdisk fields (high 32 bits in the ext_*
// fields), the e820 table and acpi_rsdp_addr.
func WriteBootParams(mem []byte, addr uint64, p BootParams) error {
	if addr > uint64(len(mem)) || uint64(len(mem))-addr < ZeroPageSize {
		return fmt.Errorf("amd64: zero page at %#x: %w (guest RAM is %#x bytes)", addr, ErrMemoryTooSmall, len(mem))
	}
	if len(p.E820) > MaxE820Entries {
		return fmt.Errorf("amd64: zero page: %d e820 entries, at most %d fit: %w", len(p.E820), MaxE820Entries, ErrInvalidConfig)
	}
	if len(p.Header) > hdrMaxEnd-hdrStart {
		return fmt.Errorf("amd64: zero page: setup header of %d bytes, at most %d fit: %w", len(p.Header), hdrMaxEnd-hdrStart, ErrInvalidConfig)
	}
	if len(p.Header) < minHeaderEnd-hdrStart {
		return fmt.Errorf("amd64: zero page: setup header of %d bytes, need %d: %w", len(p.Header), minHeaderEnd-hdrStart, ErrNotBzImage)
	}
	zp := mem[addr : addr+ZeroPageSize]
	clear(zp)
	le := binary.LittleEndian
	copy(zp[hdrStart:], p.Header)
	zp[offTypeOfLoader] = typeOfLoaderUndefined
	zp[offLoadFlags] |= CanUseHeap
	le.PutUint16(zp[offHeapEndPtr:], heapEndPtr)
	le.PutUint32(zp[offCmdLinePtr:], uint32(p.CmdlineAddr))
	le.PutUint32(zp[bpExtCmdLinePtr:], uint32(p.CmdlineAddr>>32))
	le.PutUint32(zp[offRamdiskImage:], uint32(p.InitrdAddr))
	le.PutUint32(zp[offRamdiskSize:], uint32(p.InitrdSize))
	le.PutUint32(zp[bpExtRamdiskImage:], uint32(p.InitrdAddr>>32))
	le.PutUint32(zp[bpExtRamdiskSize:], uint32(p.InitrdSize>>32))
	le.PutUint64(zp[bpACPIRSDPAddr:], p.RSDPAddr)
	zp[bpE820Entries] = uint8(len(p.E820))
	for i, e := range p.E820 {
		off := bpE820Table + i*e820EntrySize
		le.PutUint64(zp[off:], e.Addr)
		le.PutUint64(zp[off+8:], e.Size)
		le.PutUint32(zp[off+16:], e.Type)
	}
	return nil
}
