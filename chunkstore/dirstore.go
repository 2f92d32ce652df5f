package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/smolvm/smolvm/format"
)

// DirStore keeps frames in a local directory, one file per frame at
// <dir>/<hex[0:2]>/<hex[2:4]>/<hex> (hex: the frame digest's 64 hex digits),
// with a sidecar <hex>.pages holding the frame's page digests (32 bytes each)
// so that a later pack can reuse single pages of stored frames. Writes go to
// an unnamed temp file published by rename: concurrent writers of one frame
// are safe (they write the same bytes), and a killed writer leaves nothing.
type DirStore struct {
	dir string
}

// OpenDir opens (creating if needed) a directory store.
func OpenDir(dir string) (*DirStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chunkstore: store %s: %w", dir, err)
	}
	return &DirStore{dir: dir}, nil
}

// Dir is the store's directory.
func (s *DirStore) Dir() string { return s.dir }

func (s *DirStore) path(d format.Digest) string {
	h := d.Hex()
	return filepath.Join(s.dir, h[0:2], h[2:4], h)
}

// Get reads frame d's raw bytes.
func (s *DirStore) Get(ctx context.Context, d format.Digest) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := s.path(d)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("chunkstore: store %s: frame %s: %w", s.dir, d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("chunkstore: store %s: frame %s: %w", s.dir, d, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("chunkstore: %s: %w", p, err)
	}
	// A frame never compresses to more than its input plus zstd's small
	// overhead; anything larger is not a frame.
	if max := int64(format.MaxFramePages*format.PageSize + 64<<10); st.Size() > max {
		return nil, fmt.Errorf("chunkstore: %s: %w: %d bytes, a frame is at most %d", p, ErrCorrupt, st.Size(), max)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("chunkstore: %s: %w", p, err)
	}
	return b, nil
}

// Has reports whether frame d is in the store.
func (s *DirStore) Has(ctx context.Context, d format.Digest) (bool, error) {
	_, err := os.Stat(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Put stores frame d (see WriteStore).
func (s *DirStore) Put(ctx context.Context, d format.Digest, raw []byte, pages []format.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if got := format.FrameDigest(pages); got != d {
		return fmt.Errorf("chunkstore: put frame %s: page digests give %s", d, got)
	}
	p := s.path(d)
	if _, err := os.Stat(p + ".pages"); err == nil {
		return nil // sidecar is written last: the frame is complete
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("chunkstore: put frame %s: %w", d, err)
	}
	if err := writeAtomic(p, raw); err != nil {
		return fmt.Errorf("chunkstore: put frame %s: %w", d, err)
	}
	side := make([]byte, 0, 32*len(pages))
	for i := range pages {
		side = append(side, pages[i][:]...)
	}
	if err := writeAtomic(p+".pages", side); err != nil {
		return fmt.Errorf("chunkstore: put frame %s: %w", d, err)
	}
	return nil
}

func writeAtomic(path string, b []byte) error {
	f, err := CreateAtomic(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return f.Commit()
}

// Pages returns frame d's page digests from its sidecar, checked against d.
func (s *DirStore) Pages(d format.Digest) ([]format.Digest, error) {
	p := s.path(d) + ".pages"
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("chunkstore: store %s: frame %s: %w", s.dir, d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("chunkstore: %w", err)
	}
	if len(b) == 0 || len(b)%32 != 0 || len(b)/32 > format.MaxFramePages {
		return nil, fmt.Errorf("chunkstore: %s: %w: %d bytes is not a page digest list", p, ErrCorrupt, len(b))
	}
	pages := make([]format.Digest, len(b)/32)
	for i := range pages {
		copy(pages[i][:], b[32*i:])
	}
	if got := format.FrameDigest(pages); got != d {
		return nil, fmt.Errorf("chunkstore: %s: %w: page digests give %s", p, ErrCorrupt, got)
	}
	return pages, nil
}

// StoredFrame describes a frame found by Walk.
type StoredFrame struct {
	Digest format.Digest
	Length int64
	Pages  []format.Digest
}

// Walk calls fn for every complete frame in the store (blob and sidecar
// present and consistent); damaged sidecars are skipped, not fatal.
func (s *DirStore) Walk(ctx context.Context, fn func(StoredFrame) error) error {
	return filepath.WalkDir(s.dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		h, ok := strings.CutSuffix(name, ".pages")
		if de.IsDir() || !ok {
			return nil
		}
		d, err := format.ParseDigest(h)
		if err != nil {
			return nil
		}
		st, err := os.Stat(strings.TrimSuffix(path, ".pages"))
		if err != nil {
			return nil
		}
		pages, err := s.Pages(d)
		if err != nil {
			return nil
		}
		return fn(StoredFrame{Digest: d, Length: st.Size(), Pages: pages})
	})
}
