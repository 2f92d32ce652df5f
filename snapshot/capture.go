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

// captureMemory writes guest RAM regions back to back (MemoryLayout) into
// path. It reads guest memory: the machine must be paused.
func captureMemory(path string, regions [][]byte) (dataPages int64, err error) {
	var size int64
	for _, r := range regions {
		size += int64(len(r))
	}
	w, err := createSparse(path, size)
	if err != nil {
		return 0, fmt.Errorf("snapshot: memory: %w", err)
	}
	defer w.close()
	var off int64
	for i, r := range regions {
		for lo := 0; lo < len(r); lo += captureChunk {
			hi := min(lo+captureChunk, len(r))
			if err := w.writeAt(r[lo:hi], off+int64(lo)); err != nil {
				return 0, fmt.Errorf("snapshot: memory region %d at offset %#x: %w", i, lo, err)
			}
		}
		off += int64(len(r))
	}
	if err := w.close(); err != nil {
		return 0, fmt.Errorf("snapshot: memory: %w", err)
	}
	return w.dataPages, nil
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
