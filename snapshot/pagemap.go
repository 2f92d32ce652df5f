package snapshot

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"github.com/smolvm/smolvm/format"
)

// Which pages of guest RAM has this process ever populated? A restored
// clone's memory starts as its parent bundle's memory image, filled lazily
// (userfaultfd, or a private mapping of the daemon's memory file) or only
// where the image has data (eager): a page the clone never touched is
// still exactly the parent's page, so a snapshot takes it from the parent
// bundle instead of reading RAM, which would fault the whole of memory in
// through the daemon. /proc/self/pagemap says per page whether it is
// present (bit 63) or swapped out (bit 62); neither means never populated
// (nothing here drops guest pages with MADV_DONTNEED).

const (
	pagemapPresent = 1 << 63
	pagemapSwapped = 1 << 62
)

// pagemap reads /proc/self/pagemap.
type pagemap struct {
	f   *os.File
	buf []byte
}

func openPagemap() (*pagemap, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &pagemap{f: f}, nil
}

func (p *pagemap) close() error { return p.f.Close() }

// populated sets out[i] for each page i of b (b page aligned, out one
// entry per page) to whether it is present or swapped.
func (p *pagemap) populated(b []byte, out []bool) error {
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if addr%format.PageSize != 0 || len(b)%format.PageSize != 0 || len(out) != len(b)/format.PageSize {
		return fmt.Errorf("snapshot: pagemap of %#x+%#x: not page aligned", addr, len(b))
	}
	need := len(out) * 8
	if cap(p.buf) < need {
		p.buf = make([]byte, need)
	}
	buf := p.buf[:need]
	off := int64(addr/format.PageSize) * 8
	if n, err := p.f.ReadAt(buf, off); n != need {
		return fmt.Errorf("snapshot: pagemap at %#x: read %d of %d bytes: %v", addr, n, need, err)
	}
	for i := range out {
		e := binary.LittleEndian.Uint64(buf[i*8:])
		out[i] = e&(pagemapPresent|pagemapSwapped) != 0
	}
	return nil
}
