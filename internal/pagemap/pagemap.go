package pagemap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Entry bits of /proc/PID/pagemap.
const (
	// PFNMask is the page frame number (bits 0-54; zero without
	// CAP_SYS_ADMIN).
	PFNMask = 1<<55 - 1
	// Swapped: the page is in swap.
	Swapped = 1 << 62
	// Present: the page is in RAM.
	Present = 1 << 63
)

// PageSize is the page size the entries describe.
const PageSize = 4096

// ErrShort: fewer entries could be read than asked for (the range is past
// the end of the table, or the file is not a pagemap).
var ErrShort = errors.New("pagemap: short read")

// Populated says whether a page with entry e was ever populated and still
// is: present in RAM or swapped out.
func Populated(e uint64) bool { return e&(Present|Swapped) != 0 }

// Decode decodes little-endian 64-bit entries (pagemap or kpageflags).
func Decode(b []byte) ([]uint64, error) {
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("pagemap: %d bytes of page entries: not a multiple of 8", len(b))
	}
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return out, nil
}

// Read returns the entries of n pages from virtual address addr (page
// aligned) in the pagemap r.
func Read(r io.ReaderAt, addr uint64, n int64) ([]uint64, error) {
	if addr%PageSize != 0 || n < 0 || addr/PageSize > (1<<60)/8 {
		return nil, fmt.Errorf("pagemap: %d pages at %#x: not a page-aligned range in the table", n, addr)
	}
	b := make([]byte, n*8)
	if got, err := r.ReadAt(b, int64(addr/PageSize*8)); got != len(b) {
		return nil, fmt.Errorf("%w: %d pages at %#x: read %d of %d bytes: %v", ErrShort, n, addr, got, len(b), err)
	}
	return Decode(b)
}
