package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteTo writes the archive as a gzip-compressed newc cpio stream, the form
// the kernel's -initrd / initramfs loader takes. It implements io.WriterTo.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return 0, err
	}
	if err := a.WriteCpio(zw); err != nil {
		return cw.n, err
	}
	if err := zw.Close(); err != nil {
		return cw.n, fmt.Errorf("initramfs: gzip: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteFile writes the gzip'd archive to file through a temporary file in the
// same directory renamed into place, so readers never see a partial archive.
func (a *Archive) WriteFile(file string) error {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".tmp*")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := a.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("initramfs: writing %s: %w", file, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("initramfs: writing %s: %w", file, err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// CacheDir is where built archives are cached: $XDG_CACHE_HOME/smolvm when
// XDG_CACHE_HOME is set, else /var/cache/smolvm.
func CacheDir() string {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "smolvm")
	}
	return "/var/cache/smolvm"
}

// Cache returns the path of dir/name-DIGEST.cpio.gz, writing the archive
// there first unless a previous call already did. dir "" means CacheDir().
func (a *Archive) Cache(dir, name string) (string, error) {
	if dir == "" {
		dir = CacheDir()
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-%.16s.cpio.gz", name, a.Digest()))
	if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
		return file, nil
	}
	if err := a.WriteFile(file); err != nil {
		return "", err
	}
	return file, nil
}
