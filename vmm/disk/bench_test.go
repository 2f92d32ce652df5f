package disk

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkOverlay measures the copy-on-write overlay against the raw file
// it sits on: 64 KiB sequential writes into fresh blocks (no copy-up),
// 512-byte writes into fresh blocks (copy-up of each 4 KiB block), and 1 MiB
// reads of a disk that is half overlay, half base, interleaved per 64 KiB.
func BenchmarkOverlay(b *testing.B) {
	const size = 64 << 20
	dir := b.TempDir()
	base := filepath.Join(dir, "base")
	if err := os.WriteFile(base, make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	open := func(b *testing.B) Disk {
		os.Remove(filepath.Join(dir, "ov"))
		os.Remove(filepath.Join(dir, "ov") + MapSuffix)
		d, err := Open(base, ModeCOW, filepath.Join(dir, "ov"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Close() })
		return d
	}
	b.Run("write64K-fresh", func(b *testing.B) {
		d := open(b)
		buf := make([]byte, 64<<10)
		b.SetBytes(int64(len(buf)))
		for i := range b.N {
			if _, err := d.WriteAt(buf, int64(i*len(buf))%size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write512-copyup", func(b *testing.B) {
		d := open(b)
		buf := make([]byte, 512)
		b.SetBytes(int64(len(buf)))
		for i := range b.N {
			if _, err := d.WriteAt(buf, int64(i)*4096%size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read1M-half-overlay", func(b *testing.B) {
		d := open(b)
		chunk := make([]byte, 64<<10)
		for off := int64(0); off < size; off += 2 * int64(len(chunk)) {
			d.WriteAt(chunk, off)
		}
		buf := make([]byte, 1<<20)
		b.SetBytes(int64(len(buf)))
		b.ResetTimer()
		for i := range b.N {
			if _, err := d.ReadAt(buf, int64(i*len(buf))%size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read1M-raw", func(b *testing.B) {
		d, err := OpenFile(base, true)
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		buf := make([]byte, 1<<20)
		b.SetBytes(int64(len(buf)))
		for i := range b.N {
			if _, err := d.ReadAt(buf, int64(i*len(buf))%size); err != nil {
				b.Fatal(err)
			}
		}
	})
}
