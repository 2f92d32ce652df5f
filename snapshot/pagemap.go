package snapshot

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/pagemap"
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

// pagemapFile reads /proc/self/pagemap.
type pagemapFile struct{ f *os.File }

func openPagemap() (*pagemapFile, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &pagemapFile{f: f}, nil
}

func (p *pagemapFile) close() error { return p.f.Close() }

// populated sets out[i] for each page i of b (b page aligned, out one
// entry per page) to whether it is present or swapped.
func (p *pagemapFile) populated(b []byte, out []bool) error {
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	if addr%format.PageSize != 0 || len(b)%format.PageSize != 0 || len(out) != len(b)/format.PageSize {
		return fmt.Errorf("snapshot: pagemap of %#x+%#x: not page aligned", addr, len(b))
	}
	entries, err := pagemap.Read(p.f, addr, int64(len(out)))
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	for i, e := range entries {
		out[i] = pagemap.Populated(e)
	}
	return nil
}
