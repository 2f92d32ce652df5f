package registry

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// Cache is the shared local cache ($XDG_CACHE_HOME/smolvm by default):
//
//	blobs/sha256/<hex>           whole packs, checked against their digest
//	blobs/sha256/.<hex>.partial  a pack being downloaded (resumed from its size)
//	frames/<hex[0:2]>/<hex>      single frames, verified against their pages
//
// Files appear by rename only when complete and checked; readers check them
// again before use (a damaged cache file is removed and fetched again).
type Cache struct {
	Dir string
}

// DefaultCacheDir is $XDG_CACHE_HOME/smolvm (or ~/.cache/smolvm).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("registry: cache directory: %w", err)
	}
	return filepath.Join(d, "smolvm"), nil
}

func openCache(dir string) (*Cache, error) {
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"blobs/sha256", "frames"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("registry: cache: %w", err)
		}
	}
	return &Cache{Dir: dir}, nil
}

func (c *Cache) packPath(d format.Digest) string {
	return filepath.Join(c.Dir, "blobs", "sha256", d.Hex())
}

func (c *Cache) partialPath(d format.Digest) string {
	return filepath.Join(c.Dir, "blobs", "sha256", "."+d.Hex()+".partial")
}

func (c *Cache) framePath(d format.Digest) string {
	h := d.Hex()
	return filepath.Join(c.Dir, "frames", h[:2], h)
}

// readPackRange reads [off, off+n) of a cached pack; ok=false when the pack
// is not cached.
func (c *Cache) readPackRange(d format.Digest, off, n int64) ([]byte, bool) {
	f, err := os.Open(c.packPath(d))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, false
	}
	return b, true
}

// hasPack reports whether pack d of size bytes is cached (size checked; the
// digest was checked when it was published).
func (c *Cache) hasPack(d format.Digest, size int64) bool {
	st, err := os.Stat(c.packPath(d))
	return err == nil && st.Size() == size
}

// readFrame returns a cached frame's raw bytes, or ok=false.
func (c *Cache) readFrame(d format.Digest) ([]byte, bool) {
	b, err := os.ReadFile(c.framePath(d))
	if err != nil {
		return nil, false
	}
	return b, true
}

// readBlob returns a small cached blob (a config) whose SHA-256 and size
// match; ok=false when absent (a damaged one is removed). A nil cache holds
// nothing.
func (c *Cache) readBlob(digest string, size int64) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	d, err := format.ParseDigest(digest)
	if err != nil {
		return nil, false
	}
	b, err := os.ReadFile(c.packPath(d))
	if err != nil {
		return nil, false
	}
	if int64(len(b)) != size || format.Digest(sha256.Sum256(b)) != d {
		os.Remove(c.packPath(d))
		return nil, false
	}
	return b, true
}

// putBlob caches a blob already checked against digest (best effort).
func (c *Cache) putBlob(digest string, b []byte) {
	if c == nil {
		return
	}
	d, err := format.ParseDigest(digest)
	if err != nil {
		return
	}
	f, err := chunkstore.CreateAtomic(c.packPath(d))
	if err != nil {
		return
	}
	defer f.Abort()
	if _, err := f.Write(b); err == nil {
		_ = f.Commit()
	}
}

// hasFrame reports whether frame d is in the frame cache (not verified).
func (c *Cache) hasFrame(d format.Digest) bool {
	_, err := os.Stat(c.framePath(d))
	return err == nil
}

// putFrame caches a verified frame (best effort: a failure costs a fetch).
func (c *Cache) putFrame(d format.Digest, raw []byte) {
	p := c.framePath(d)
	if _, err := os.Stat(p); err == nil {
		return
	}
	if os.MkdirAll(filepath.Dir(p), 0o755) != nil {
		return
	}
	f, err := chunkstore.CreateAtomic(p)
	if err != nil {
		return
	}
	defer f.Abort()
	if _, err := f.Write(raw); err == nil {
		_ = f.Commit()
	}
}

// dropPack removes a cached pack found damaged.
func (c *Cache) dropPack(d format.Digest) { os.Remove(c.packPath(d)) }

// dropFrame removes a cached frame that failed verification.
func (c *Cache) dropFrame(d format.Digest) { os.Remove(c.framePath(d)) }

// hashFile returns the SHA-256 and size of a file's bytes (0 and the empty
// hash state when it does not exist).
func hashFile(path string) (h hash.Hash, size int64, err error) {
	h = sha256.New()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	size, err = io.Copy(h, f)
	return h, size, err
}
