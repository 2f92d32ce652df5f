package chunkstore

import (
	"errors"
	"io"
	"os"

	"github.com/smolvm/smolvm/format"
	"golang.org/x/sys/unix"
)

// sparseReader reads a pack input: a regular file by offset, finding its
// holes with SEEK_DATA so they are never read; anything else (a pipe)
// sequentially.
type sparseReader struct {
	f      *os.File
	size   int64 // regular files: size at open; -1 otherwise
	sparse bool  // SEEK_DATA works
}

func newSparseReader(f *os.File) *sparseReader {
	r := &sparseReader{f: f, size: -1}
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		r.size = st.Size()
		_, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
		r.sparse = err == nil || errors.Is(err, unix.ENXIO)
	}
	return r
}

// holeAt returns how many bytes of whole zero pages start at off (a page
// multiple) and are a hole, so the caller can skip them; 0 when off is in
// data or holes are unknown. A hole reaching the end of the file stops at
// the last whole page, so the file's size is still found by reading.
func (r *sparseReader) holeAt(off int64) int64 {
	if !r.sparse || off >= r.size {
		return 0
	}
	data, err := unix.Seek(int(r.f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		data = r.size // hole to the end
	} else if err != nil {
		return 0
	}
	skip := (data - off) &^ (format.PageSize - 1)
	if off+skip >= r.size {
		// Leave the last (possibly partial) page to read.
		skip = ((r.size - 1 - off) &^ (format.PageSize - 1))
	}
	return max(skip, 0)
}

// read fills b from offset off (sequentially for non-regular files, where
// off is the bytes read so far) and returns the bytes read, 0 at the end.
func (r *sparseReader) read(b []byte, off int64) (int, error) {
	var n int
	var err error
	if r.size >= 0 {
		n, err = r.f.ReadAt(b, off)
	} else {
		n, err = io.ReadFull(r.f, b)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}
