package snapshot

import (
	"fmt"
	"io"
	"os"

	"github.com/smolvm/smolvm/format"
)

// captureChunk is how much is copied at a time.
const captureChunk = 1 << 20

// sparseWriter writes an image file of a fixed size in which all-zero
// pages stay holes, so that pack skips them unread.
type sparseWriter struct {
	f         *os.File
	dataPages int64
}

func createSparse(path string, size int64) (*sparseWriter, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return &sparseWriter{f: f}, nil
}

// writeAt writes b at off, skipping its all-zero pages (off page aligned).
func (w *sparseWriter) writeAt(b []byte, off int64) error {
	for start := 0; start < len(b); {
		end := min(start+format.PageSize, len(b))
		if format.IsZero(b[start:end]) {
			start = end
			continue
		}
		// A run of non-zero pages, written at once.
		run := end
		for run < len(b) {
			next := min(run+format.PageSize, len(b))
			if format.IsZero(b[run:next]) {
				break
			}
			run = next
		}
		if _, err := w.f.WriteAt(b[start:run], off+int64(start)); err != nil {
			return err
		}
		w.dataPages += int64((run - start + format.PageSize - 1) / format.PageSize)
		start = run
	}
	return nil
}

func (w *sparseWriter) close() error { return w.f.Close() }

// memCapture counts what captureMemory wrote and lists what it left for
// fillFromParent.
type memCapture struct {
	dataPages   int64      // non-zero pages written
	parentPages int64      // never-populated pages, to take from the parent
	parentRuns  []byteSpan // where they are in the image
}

// byteSpan is n bytes at image offset off.
type byteSpan struct{ off, n int64 }

// captureMemory writes guest RAM regions back to back (MemoryLayout) into
// path. It reads guest memory: the machine must be paused. With
// skipUntouched (the machine was restored from a known parent), pages this
// process never populated are not read but listed in parentRuns, for
// fillFromParent to copy from the parent's immutable image once the guest
// runs again (pagemap.go).
func captureMemory(path string, regions [][]byte, skipUntouched bool) (res memCapture, err error) {
	var size int64
	for _, r := range regions {
		size += int64(len(r))
	}
	w, err := createSparse(path, size)
	if err != nil {
		return res, fmt.Errorf("snapshot: memory: %w", err)
	}
	defer w.close()
	var pm *pagemapFile
	if skipUntouched {
		if pm, err = openPagemap(); err != nil {
			return res, err
		}
		defer pm.close()
	}
	pop := make([]bool, captureChunk/format.PageSize)
	var off int64
	for i, r := range regions {
		for lo := 0; lo < len(r); lo += captureChunk {
			chunk, at := r[lo:min(lo+captureChunk, len(r))], off+int64(lo)
			if pm == nil {
				err = w.writeAt(chunk, at)
			} else {
				err = capturePopulated(w, pm, chunk, at, pop, &res)
			}
			if err != nil {
				return res, fmt.Errorf("snapshot: memory region %d at offset %#x: %w", i, lo, err)
			}
		}
		off += int64(len(r))
	}
	if err := w.close(); err != nil {
		return res, fmt.Errorf("snapshot: memory: %w", err)
	}
	res.dataPages = w.dataPages
	return res, nil
}

// capturePopulated writes the populated pages of chunk (at image offset
// at) and lists the others.
func capturePopulated(w *sparseWriter, pm *pagemapFile, chunk []byte, at int64, pop []bool, res *memCapture) error {
	np := len(chunk) / format.PageSize
	if err := pm.populated(chunk, pop[:np]); err != nil {
		return err
	}
	for i := 0; i < np; {
		j := i + 1
		for j < np && pop[j] == pop[i] {
			j++
		}
		segAt, n := at+int64(i*format.PageSize), int64((j-i)*format.PageSize)
		if pop[i] {
			if err := w.writeAt(chunk[i*format.PageSize:j*format.PageSize], segAt); err != nil {
				return err
			}
		} else {
			res.parentPages += int64(j - i)
			if k := len(res.parentRuns) - 1; k >= 0 && res.parentRuns[k].off+res.parentRuns[k].n == segAt {
				res.parentRuns[k].n += n
			} else {
				res.parentRuns = append(res.parentRuns, byteSpan{segAt, n})
			}
		}
		i = j
	}
	return nil
}

// fillFromParent copies runs of the parent's memory image into the memory
// file at path (zero pages stay holes).
func fillFromParent(path string, runs []byteSpan, parent io.ReaderAt) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("snapshot: memory: %w", err)
	}
	w := &sparseWriter{f: f}
	defer w.close()
	buf := make([]byte, captureChunk)
	for _, r := range runs {
		for off := r.off; off < r.off+r.n; off += captureChunk {
			b := buf[:min(captureChunk, r.off+r.n-off)]
			if n, err := parent.ReadAt(b, off); n != len(b) {
				return fmt.Errorf("snapshot: parent memory at offset %#x: %d of %d bytes: %w", off, n, len(b), err)
			}
			if err := w.writeAt(b, off); err != nil {
				return fmt.Errorf("snapshot: memory: %w", err)
			}
		}
	}
	if err := w.close(); err != nil {
		return fmt.Errorf("snapshot: memory: %w", err)
	}
	return nil
}

// captureDisk copies size bytes of a disk as the guest sees it into path.
func captureDisk(path, name string, d io.ReaderAt, size int64) (dataPages int64, err error) {
	w, err := createSparse(path, size)
	if err != nil {
		return 0, fmt.Errorf("snapshot: disk %s: %w", name, err)
	}
	defer w.close()
	buf := make([]byte, captureChunk)
	for off := int64(0); off < size; off += captureChunk {
		n := int(min(captureChunk, size-off))
		if got, err := d.ReadAt(buf[:n], off); err != nil && !(err == io.EOF && got == n) {
			return 0, fmt.Errorf("snapshot: disk %s: reading at offset %d: %w", name, off, err)
		}
		if err := w.writeAt(buf[:n], off); err != nil {
			return 0, fmt.Errorf("snapshot: disk %s: %w", name, err)
		}
	}
	if err := w.close(); err != nil {
		return 0, fmt.Errorf("snapshot: disk %s: %w", name, err)
	}
	return w.dataPages, nil
}
