package acpi

import "encoding/binary"

// Resource descriptors (ACPI spec 6.4) for _CRS buffers. Each function
// returns one encoded descriptor; resourceTemplate appends the end tag.

const (
	resIRQNoFlags   = 0x22 // small item, IRQ, 2 bytes of data
	resIOPort       = 0x47 // small item, I/O port, 7 bytes of data
	resEndTag       = 0x79 // small item, end tag, 1 byte of data
	resDWordAddress = 0x87 // large item, DWord address space
	resExtendedIRQ  = 0x89 // large item, extended interrupt
	resWordAddress  = 0x88 // large item, Word address space

	addrSpaceMemory = 0
	addrSpaceIO     = 1
	addrSpaceBus    = 2

	// general flags: producer, positive decode, min and max fixed.
	addrFlagsProducerFixed = 1<<2 | 1<<3
	// I/O type-specific flags: the range covers both ISA and non-ISA.
	ioEntireRange = 3
	// memory type-specific flags: read/write, non-cacheable.
	memReadWrite = 1
)

// ioPort encodes IO(Decode16, base, base, 1, length): a fixed port range.
func ioPort(base uint16, length uint8) []byte {
	b := []byte{resIOPort, 1}
	b = binary.LittleEndian.AppendUint16(b, base)
	b = binary.LittleEndian.AppendUint16(b, base)
	return append(b, 1, length)
}

// irqNoFlags encodes IRQNoFlags(){irq}: edge triggered, active high ISA IRQ.
func irqNoFlags(irq uint8) []byte {
	return binary.LittleEndian.AppendUint16([]byte{resIRQNoFlags}, 1<<irq)
}

// Extended interrupt descriptor flags (ACPI 6.4, 6.4.3.6).
const (
	extIRQConsumer  = 1 << 0
	extIRQEdge      = 1 << 1
	extIRQActiveLow = 1 << 2
)

// edgeInterrupt encodes Interrupt(ResourceConsumer, Edge, ActiveHigh,
// Exclusive) {gsi}: one GSI, no resource source.
func edgeInterrupt(gsi uint32) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16([]byte{resExtendedIRQ}, 6) // flags, count, one GSI
	b = append(b, extIRQConsumer|extIRQEdge, 1)
	return le.AppendUint32(b, gsi)
}

// wordAddress encodes a Word address space descriptor for [min, max] that
// the device produces (a bridge window).
func wordAddress(space, typeFlags uint8, lo, hi uint16) []byte {
	le := binary.LittleEndian
	b := []byte{resWordAddress}
	b = le.AppendUint16(b, 13)
	b = append(b, space, addrFlagsProducerFixed, typeFlags)
	b = le.AppendUint16(b, 0) // granularity
	b = le.AppendUint16(b, lo)
	b = le.AppendUint16(b, hi)
	b = le.AppendUint16(b, 0) // translation offset
	return le.AppendUint16(b, hi-lo+1)
}

// wordBusNumber encodes WordBusNumber(ResourceProducer, MinFixed, MaxFixed,
// PosDecode) for buses [lo, hi].
func wordBusNumber(lo, hi uint16) []byte { return wordAddress(addrSpaceBus, 0, lo, hi) }

// wordIO encodes WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode,
// EntireRange) for ports [lo, hi].
func wordIO(lo, hi uint16) []byte { return wordAddress(addrSpaceIO, ioEntireRange, lo, hi) }

// dwordMemory encodes DWordMemory(ResourceProducer, PosDecode, MinFixed,
// MaxFixed, NonCacheable, ReadWrite) for [lo, hi].
func dwordMemory(lo, hi uint32) []byte {
	le := binary.LittleEndian
	b := []byte{resDWordAddress}
	b = le.AppendUint16(b, 23)
	b = append(b, addrSpaceMemory, addrFlagsProducerFixed, memReadWrite)
	b = le.AppendUint32(b, 0) // granularity
	b = le.AppendUint32(b, lo)
	b = le.AppendUint32(b, hi)
	b = le.AppendUint32(b, 0) // translation offset
	return le.AppendUint32(b, hi-lo+1)
}

// resourceTemplate joins descriptors and appends the end tag (checksum 0:
// "treat as correct").
func resourceTemplate(descs ...[]byte) []byte {
	return append(concat(descs...), resEndTag, 0)
}
