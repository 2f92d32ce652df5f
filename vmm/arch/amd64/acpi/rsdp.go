package acpi

import "encoding/binary"

// RSDP layout (ACPI 2.0+).
const (
	RSDPSize       = 36
	rsdpRevision   = 2
	rsdpChecksumV1 = 20 // the first checksum covers the ACPI 1.0 part
	xsdtRevision   = 1
)

// RSDP builds the Root System Description Pointer (revision 2) for the XSDT
// at xsdt. The RSDT address is 0: revision 2 readers use the XSDT.
func RSDP(xsdt uint64) []byte {
	le := binary.LittleEndian
	r := make([]byte, RSDPSize)
	copy(r[0:8], "RSD PTR ")
	copy(r[9:15], OEMID)
	r[15] = rsdpRevision
	le.PutUint32(r[20:], RSDPSize)
	le.PutUint64(r[24:], xsdt)
	r[8] = -Sum(r[:rsdpChecksumV1])
	r[32] = -Sum(r)
	return r
}

// XSDT builds the Extended System Description Table listing tables.
func XSDT(tables ...uint64) []byte {
	t := header("XSDT", HeaderSize+8*len(tables), xsdtRevision)
	for _, a := range tables {
		t = binary.LittleEndian.AppendUint64(t, a)
	}
	return finish(t)
}
