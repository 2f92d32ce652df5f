package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultBlockSize is an overlay's copy-on-write granule: the page size, so
// a guest's 4 KiB writes need no copy-up.
const DefaultBlockSize = 4096

// OverlayOptions tune a new overlay (an existing one keeps its own).
type OverlayOptions struct {
	BlockSize uint32 // power of two >= 512; DefaultBlockSize if 0
}

// Overlay is a copy-on-write disk: reads come from the overlay file for
// blocks the guest wrote and from the base for the rest; writes go to the
// overlay file only, whole blocks at a time (a partial write to a block not
// yet in the overlay first copies the block up from the base). Flush makes
// the overlay's data durable and then replaces the block map file
// atomically, so after a crash the map names only blocks whose data reached
// the disk.
type Overlay struct {
	base      io.ReaderAt
	size      int64
	path      string
	data      *os.File
	mapPath   string
	mu        sync.Mutex
	bm        *blockMap
	dirty     bool // bm or data changed since the last Flush
	closed    bool
	buf       []byte
	closeBase func() error
}

// OpenOverlay opens the overlay at path over base (size bytes), creating it
// (a sparse data file of size bytes and path+MapSuffix) if it does not exist.
// An existing overlay must have been made for a base of the same size.
func OpenOverlay(base io.ReaderAt, size int64, path string, o OverlayOptions) (*Overlay, error) {
	if size < 0 {
		return nil, fmt.Errorf("%w: base size %d", ErrMode, size)
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 512 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("%w: block size %d is not a power of two >= 512", ErrMode, bs)
	}
	ov := &Overlay{base: base, size: size, path: path, mapPath: path + MapSuffix}
	raw, err := os.ReadFile(ov.mapPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ov.bm = newBlockMap(uint64(size), bs)
		if ov.data, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600); err != nil {
			return nil, fmt.Errorf("disk: overlay: %w", err)
		}
		if err := ov.data.Truncate(size); err != nil {
			ov.data.Close()
			return nil, fmt.Errorf("disk: overlay %s: %w", path, err)
		}
		if err := writeFileAtomic(ov.mapPath, ov.bm.encode()); err != nil {
			ov.data.Close()
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("disk: overlay: %w", err)
	default:
		if ov.bm, err = decodeBlockMap(ov.mapPath, raw); err != nil {
			return nil, err
		}
		if ov.bm.diskSize != uint64(size) {
			return nil, fmt.Errorf("%w: %s was made for a %d-byte disk, the base has %d", ErrCorrupt, ov.mapPath, ov.bm.diskSize, size)
		}
		if ov.data, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			return nil, fmt.Errorf("disk: overlay: %w", err)
		}
		fi, err := ov.data.Stat()
		if err != nil || fi.Size() != size {
			ov.data.Close()
			return nil, fmt.Errorf("%w: data file %s is not %d bytes (%v)", ErrCorrupt, path, size, err)
		}
	}
	ov.buf = make([]byte, ov.bm.blockSize)
	return ov, nil
}

// Size is the disk's size.
func (o *Overlay) Size() int64 { return o.size }

// ReadOnly is false: writes go to the overlay.
func (o *Overlay) ReadOnly() bool { return false }

// Path is the overlay data file; its block map is Path()+MapSuffix.
func (o *Overlay) Path() string { return o.path }

// BlockSize is the copy-on-write granule.
func (o *Overlay) BlockSize() uint32 { return o.bm.blockSize }

// WrittenBlocks counts the blocks held by the overlay.
func (o *Overlay) WrittenBlocks() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bm.count()
}

// ReadAt merges the overlay and the base.
func (o *Overlay) ReadAt(p []byte, off int64) (int, error) {
	if err := checkRange(o.path, off, len(p), o.size); err != nil {
		return 0, err
	}
	bs := int64(o.bm.blockSize)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return done, ErrClosed
		}
		inOverlay := o.bm.has(uint64(pos / bs))
		// Extend the run over following blocks in the same place.
		end := min((pos/bs+1)*bs, off+int64(len(p)))
		for end < off+int64(len(p)) && o.bm.has(uint64(end/bs)) == inOverlay {
			end = min(end+bs, off+int64(len(p)))
		}
		o.mu.Unlock()
		var src io.ReaderAt = o.base
		what := "base"
		if inOverlay {
			src, what = o.data, "overlay"
		}
		n, err := src.ReadAt(p[done:done+int(end-pos)], pos)
		if err != nil && !(err == io.EOF && n == int(end-pos)) {
			return done + n, fmt.Errorf("disk: read %s of %s at %d: %w", what, o.path, pos, err)
		}
		done += int(end - pos)
	}
	return done, nil
}

// WriteAt writes into the overlay, copying up partly written blocks.
func (o *Overlay) WriteAt(p []byte, off int64) (int, error) {
	if err := checkRange(o.path, off, len(p), o.size); err != nil {
		return 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, ErrClosed
	}
	bs := int64(o.bm.blockSize)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		blk := pos / bs
		start := blk * bs
		end := min(start+bs, o.size)
		n := int(min(end, off+int64(len(p))) - pos)
		if !o.bm.has(uint64(blk)) && (pos != start || pos+int64(n) != end) {
			// Copy-up: the whole block, merged, in one write.
			b := o.buf[:end-start]
			if _, err := o.base.ReadAt(b, start); err != nil && err != io.EOF {
				return done, fmt.Errorf("disk: copy-up of block %d from the base of %s: %w", blk, o.path, err)
			}
			copy(b[pos-start:], p[done:done+n])
			if _, err := o.data.WriteAt(b, start); err != nil {
				return done, fmt.Errorf("disk: write overlay %s at %d: %w", o.path, start, err)
			}
		} else if _, err := o.data.WriteAt(p[done:done+n], pos); err != nil {
			return done, fmt.Errorf("disk: write overlay %s at %d: %w", o.path, pos, err)
		}
		o.bm.set(uint64(blk))
		o.dirty = true
		done += n
	}
	return done, nil
}

// Flush syncs the overlay data, then replaces the block map atomically.
func (o *Overlay) Flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.flushLocked()
}

func (o *Overlay) flushLocked() error {
	if o.closed {
		return ErrClosed
	}
	if !o.dirty {
		return nil
	}
	if err := unix.Fdatasync(int(o.data.Fd())); err != nil {
		return fmt.Errorf("disk: fdatasync %s: %w", o.path, err)
	}
	if err := writeFileAtomic(o.mapPath, o.bm.encode()); err != nil {
		return err
	}
	o.dirty = false
	return nil
}

// Close flushes and closes the overlay (and the base, when Open opened it).
func (o *Overlay) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	err := o.flushLocked()
	o.closed = true
	err = errors.Join(err, o.data.Close())
	if o.closeBase != nil {
		err = errors.Join(err, o.closeBase())
	}
	return err
}
