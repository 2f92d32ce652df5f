package acpi

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// A tiny encoder for the subset of AML (ACPI spec chapter 20) the DSDT
// needs: names, scopes, devices, packages, buffers, integers and strings.
// Each function returns the encoded bytes of one term.

// AML opcodes and prefixes.
const (
	opZero        = 0x00
	opOne         = 0x01
	opName        = 0x08
	opBytePrefix  = 0x0A
	opWordPrefix  = 0x0B
	opDWordPrefix = 0x0C
	opStringPfx   = 0x0D
	opQWordPrefix = 0x0E
	opScope       = 0x10
	opBuffer      = 0x11
	opPackage     = 0x12
	opOnes        = 0xFF
	opExtPrefix   = 0x5B
	opDevice      = 0x82 // after opExtPrefix
	rootChar      = '\\'
	dualNamePfx   = 0x2E
	multiNamePfx  = 0x2F
)

// pkgLength encodes a PkgLength for n bytes of content that follow it; the
// encoded length counts its own bytes too (spec 20.2.4).
func pkgLength(n int) []byte {
	switch {
	case n+1 < 1<<6:
		return []byte{byte(n + 1)}
	case n+2 < 1<<12:
		l := n + 2
		return []byte{1<<6 | byte(l&0xF), byte(l >> 4)}
	case n+3 < 1<<20:
		l := n + 3
		return []byte{2<<6 | byte(l&0xF), byte(l >> 4), byte(l >> 12)}
	default:
		l := n + 4
		return []byte{3<<6 | byte(l&0xF), byte(l >> 4), byte(l >> 12), byte(l >> 20)}
	}
}

// nameSeg pads a 1-4 character name segment with '_'.
func nameSeg(s string) []byte {
	if len(s) == 0 || len(s) > 4 {
		panic(fmt.Sprintf("acpi: aml name segment %q must be 1-4 characters", s))
	}
	return []byte(s + strings.Repeat("_", 4-len(s)))
}

// nameString encodes a name path such as `\_SB.PCI0` or `_HID`.
func nameString(path string) []byte {
	var out []byte
	if strings.HasPrefix(path, `\`) {
		out = append(out, rootChar)
		path = path[1:]
	}
	if path == "" {
		return append(out, 0) // NullName
	}
	segs := strings.Split(path, ".")
	switch len(segs) {
	case 1:
	case 2:
		out = append(out, dualNamePfx)
	default:
		out = append(out, multiNamePfx, byte(len(segs)))
	}
	for _, s := range segs {
		out = append(out, nameSeg(s)...)
	}
	return out
}

// amlInteger encodes v with the shortest encoding.
func amlInteger(v uint64) []byte {
	le := binary.LittleEndian
	switch {
	case v == 0:
		return []byte{opZero}
	case v == 1:
		return []byte{opOne}
	case v == ^uint64(0):
		return []byte{opOnes}
	case v <= 0xFF:
		return []byte{opBytePrefix, byte(v)}
	case v <= 0xFFFF:
		return le.AppendUint16([]byte{opWordPrefix}, uint16(v))
	case v <= 0xFFFFFFFF:
		return le.AppendUint32([]byte{opDWordPrefix}, uint32(v))
	default:
		return le.AppendUint64([]byte{opQWordPrefix}, v)
	}
}

// amlDWord encodes v as a DWordConst even when it is small (as _ADR values
// conventionally are).
func amlDWord(v uint32) []byte {
	return binary.LittleEndian.AppendUint32([]byte{opDWordPrefix}, v)
}

// amlString encodes an ASCII string constant.
func amlString(s string) []byte {
	out := append([]byte{opStringPfx}, s...)
	return append(out, 0)
}

// amlEISAID encodes a compressed EISA id such as "PNP0A03" as a DWordConst.
func amlEISAID(id string) []byte { return amlDWord(EISAID(id)) }

// EISAID compresses a 7-character EISA/PNP id ("PNP0A08"): three letters of
// five bits each, then four hex digits, stored so that the bytes in memory
// read 0x41 0xD0 0x0A 0x08 for PNP0A08.
func EISAID(id string) uint32 {
	if len(id) != 7 {
		panic(fmt.Sprintf("acpi: EISA id %q must have 7 characters", id))
	}
	c1, c2, c3 := uint32(id[0]-0x40), uint32(id[1]-0x40), uint32(id[2]-0x40)
	var hex uint32
	for _, d := range id[3:] {
		var v uint32
		switch {
		case d >= '0' && d <= '9':
			v = uint32(d - '0')
		case d >= 'A' && d <= 'F':
			v = uint32(d-'A') + 10
		default:
			panic(fmt.Sprintf("acpi: EISA id %q: %q is not a hex digit", id, d))
		}
		hex = hex<<4 | v
	}
	b0 := c1<<2 | c2>>3
	b1 := (c2&7)<<5 | c3
	b2 := hex >> 8
	b3 := hex & 0xFF
	return b0 | b1<<8 | b2<<16 | b3<<24
}

// amlName encodes Name(name, value).
func amlName(name string, value []byte) []byte {
	out := append([]byte{opName}, nameString(name)...)
	return append(out, value...)
}

// concat joins encoded terms.
func concat(terms ...[]byte) []byte {
	var n int
	for _, t := range terms {
		n += len(t)
	}
	out := make([]byte, 0, n)
	for _, t := range terms {
		out = append(out, t...)
	}
	return out
}

// amlScope encodes Scope(path) { terms }.
func amlScope(path string, terms ...[]byte) []byte {
	body := concat(nameString(path), concat(terms...))
	return concat([]byte{opScope}, pkgLength(len(body)), body)
}

// amlDevice encodes Device(name) { terms }.
func amlDevice(name string, terms ...[]byte) []byte {
	body := concat(nameString(name), concat(terms...))
	return concat([]byte{opExtPrefix, opDevice}, pkgLength(len(body)), body)
}

// amlPackage encodes Package() { elements } (at most 255 elements).
func amlPackage(elems ...[]byte) []byte {
	if len(elems) > 0xFF {
		panic(fmt.Sprintf("acpi: aml package of %d elements, at most 255", len(elems)))
	}
	body := concat([]byte{byte(len(elems))}, concat(elems...))
	return concat([]byte{opPackage}, pkgLength(len(body)), body)
}

// amlBuffer encodes Buffer() { data }.
func amlBuffer(data []byte) []byte {
	body := concat(amlInteger(uint64(len(data))), data)
	return concat([]byte{opBuffer}, pkgLength(len(body)), body)
}
