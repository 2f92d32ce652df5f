package pager

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/format"
)

// Mapping is guest memory as a private, copy-on-write mapping of an
// artifact file (the memory file on a smolmount): the page cache fills it
// on first touch and clones share clean pages. The process that maps a
// file on a FUSE mount must not be the one serving that mount.
type Mapping struct {
	Mem  []byte
	path string
}

// MapFile maps length bytes of path from offset (page aligned)
// MAP_PRIVATE|MAP_NORESERVE, readable and writable (writes stay private).
// length 0 maps the whole file.
func MapFile(path string, offset, length int64) (*Mapping, error) {
	if offset%format.PageSize != 0 || offset < 0 || length < 0 {
		return nil, fmt.Errorf("pager: map %s: offset %d / length %d not page aligned or negative", path, offset, length)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pager: map: %w", err)
	}
	defer f.Close()
	if length == 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, fmt.Errorf("pager: map %s: %w", path, err)
		}
		length = fi.Size() - offset
		if length <= 0 {
			return nil, fmt.Errorf("pager: map %s: nothing to map at offset %d of %d bytes", path, offset, fi.Size())
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), offset, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("pager: mmap %s [%d, +%d): %w", path, offset, length, err)
	}
	return &Mapping{Mem: mem, path: path}, nil
}

// Advice for Populate.
type Advice int

const (
	// WillNeed starts asynchronous readahead (MADV_WILLNEED).
	WillNeed Advice = iota
	// PopulateRead faults the pages in now, read-only, sharing the page
	// cache (MADV_POPULATE_READ, Linux 5.14+; falls back to WillNeed).
	PopulateRead
)

// Populate applies advice to the mapping's pages [page, page+count) for
// every range of ws on artifact (a working set recorded by the pager, in
// image pages; base is the image page at Mem[0]).
func (m *Mapping) Populate(ws *WorkingSet, artifact string, base int64, advice Advice) error {
	total := int64(len(m.Mem)) / format.PageSize
	for _, r := range ws.Ranges {
		if r.Artifact != artifact {
			continue
		}
		lo, hi := max(r.Page-base, 0), min(r.Page-base+r.Count, total)
		if lo >= hi {
			continue
		}
		b := m.Mem[lo*format.PageSize : hi*format.PageSize]
		var err error
		switch advice {
		case PopulateRead:
			if err = unix.Madvise(b, unix.MADV_POPULATE_READ); err != unix.EINVAL {
				break
			}
			fallthrough // kernel older than 5.14
		default:
			err = unix.Madvise(b, unix.MADV_WILLNEED)
		}
		if err != nil {
			return fmt.Errorf("pager: madvise %s pages [%d, %d): %w", m.path, r.Page, r.Page+r.Count, err)
		}
	}
	return nil
}

// Close unmaps the memory.
func (m *Mapping) Close() error {
	if m.Mem == nil {
		return nil
	}
	err := unix.Munmap(m.Mem)
	m.Mem = nil
	return err
}
