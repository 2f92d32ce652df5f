package acpi

import (
	"encoding/binary"
	"errors"
)

// HeaderSize is the size of the common system description table header.
const HeaderSize = 36

// Identification written into every table.
const (
	OEMID         = "SMOLVM"
	OEMRevision   = 1
	CreatorID     = "SMOL"
	CreatorRev    = 1
	oemTableIDPad = "SMOLVM  " // OEM table id prefix; the signature completes it
)

// header returns a table header for sig with the given total length and
// revision; the checksum is filled by finish.
func header(sig string, length int, revision uint8) []byte {
	h := make([]byte, HeaderSize, max(length, HeaderSize))
	copy(h[0:4], sig)
	binary.LittleEndian.PutUint32(h[4:], uint32(length))
	h[8] = revision
	copy(h[10:16], OEMID)
	copy(h[16:24], oemTableIDPad[:4]+sig)
	binary.LittleEndian.PutUint32(h[24:], OEMRevision)
	copy(h[28:32], CreatorID)
	binary.LittleEndian.PutUint32(h[32:], CreatorRev)
	return h
}

// finish writes the table's length and sets its checksum byte (offset 9) so
// that all its bytes sum to zero.
func finish(t []byte) []byte {
	binary.LittleEndian.PutUint32(t[4:], uint32(len(t)))
	t[9] = 0
	t[9] = -Sum(t)
	return t
}

// Sum is the 8-bit sum of b; a table with a correct checksum sums to 0.
func Sum(b []byte) uint8 {
	var s uint8
	for _, c := range b {
		s += c
	}
	return s
}

// ErrNoRoom: the tables do not fit the memory given to Build.
var ErrNoRoom = errors.New("no room for ACPI tables")

// ErrInvalidConfig: a Config field is out of range.
var ErrInvalidConfig = errors.New("invalid ACPI configuration")
