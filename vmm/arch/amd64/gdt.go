package amd64

import (
	"encoding/binary"
	"fmt"
)

// The boot GDT has four 8-byte descriptors at GDTAddr. The Linux boot
// protocol asks for a flat code segment at selector 0x10 (__BOOT_CS) and a
// flat data segment at 0x18 (__BOOT_DS); the TSS takes the remaining slot
// 0x08. The TSS descriptor is the 8-byte legacy form: the guest never loads
// it with LTR (KVM takes TR from Sregs) and replaces this GDT early in
// startup_64, and the room between GDTAddr and IDTAddr holds only four
// descriptors.
const (
	gdtEntries = 4

	// TSSSelector, CodeSelector and DataSelector index the boot GDT.
	TSSSelector  = 0x08
	CodeSelector = 0x10
	DataSelector = 0x18
)

// Segment types (the 4-bit type field).
const (
	segTypeDataRWA   = 0x3 // read/write, accessed
	segTypeCodeERA   = 0xB // execute/read, accessed
	segTypeTSS64Busy = 0xB // 64-bit TSS, busy (required for TR in long mode)
)

// CodeSegment, DataSegment and TSSSegment are the boot segments, matching the
// descriptors WriteGDT writes.
var (
	CodeSegment = Segment{Selector: CodeSelector, Limit: 0xFFFFFFFF, Type: segTypeCodeERA,
		Present: 1, S: 1, L: 1, G: 1}
	DataSegment = Segment{Selector: DataSelector, Limit: 0xFFFFFFFF, Type: segTypeDataRWA,
		Present: 1, S: 1, DB: 1, G: 1}
	TSSSegment = Segment{Selector: TSSSelector, Limit: 0x67, Type: segTypeTSS64Busy, Present: 1}
)

// BootGDT returns the boot GDT's descriptors, index = selector/8.
func BootGDT() [gdtEntries]uint64 {
	return [gdtEntries]uint64{
		0,
		SegmentDescriptor(TSSSegment),
		SegmentDescriptor(CodeSegment),
		SegmentDescriptor(DataSegment),
	}
}

// SegmentDescriptor encodes s as a raw 8-byte GDT descriptor. The 32-bit
// base and the 20-bit limit field are taken from s (Limit is scaled down by
// 4 KiB when G is set).
func SegmentDescriptor(s Segment) uint64 {
	limit := uint64(s.Limit)
	if s.G != 0 {
		limit >>= 12
	}
	base := s.Base
	d := limit & 0xFFFF
	d |= (base & 0xFFFFFF) << 16
	d |= uint64(s.Type&0xF) << 40
	d |= uint64(s.S&1) << 44
	d |= uint64(s.DPL&3) << 45
	d |= uint64(s.Present&1) << 47
	d |= (limit >> 16 & 0xF) << 48
	d |= uint64(s.AVL&1) << 52
	d |= uint64(s.L&1) << 53
	d |= uint64(s.DB&1) << 54
	d |= uint64(s.G&1) << 55
	d |= (base >> 24 & 0xFF) << 56
	return d
}

// SegmentFromDescriptor decodes a raw GDT descriptor into a Segment with
// the given selector (the inverse of SegmentDescriptor for 32-bit bases).
func SegmentFromDescriptor(d uint64, selector uint16) Segment {
	s := Segment{
		Base:     (d>>16)&0xFFFFFF | (d>>56&0xFF)<<24,
		Selector: selector,
		Type:     uint8(d >> 40 & 0xF),
		S:        uint8(d >> 44 & 1),
		DPL:      uint8(d >> 45 & 3),
		Present:  uint8(d >> 47 & 1),
		AVL:      uint8(d >> 52 & 1),
		L:        uint8(d >> 53 & 1),
		DB:       uint8(d >> 54 & 1),
		G:        uint8(d >> 55 & 1),
	}
	limit := uint32(d&0xFFFF) | uint32(d>>48&0xF)<<16
	if s.G != 0 {
		limit = limit<<12 | 0xFFF
	}
	s.Limit = limit
	return s
}

// WriteGDT writes the boot GDT at GDTAddr and a zeroed 8-byte IDT at IDTAddr
// into mem (guest RAM indexed by physical address).
func WriteGDT(mem []byte) error {
	if uint64(len(mem)) < IDTAddr+8 {
		return fmt.Errorf("amd64: GDT at %#x: %w (guest RAM is %#x bytes)", GDTAddr, ErrMemoryTooSmall, len(mem))
	}
	for i, d := range BootGDT() {
		binary.LittleEndian.PutUint64(mem[GDTAddr+8*i:], d)
	}
	clear(mem[IDTAddr : IDTAddr+8])
	return nil
}
