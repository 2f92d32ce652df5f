package disk

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Block map file (docs/DISK.md): a 32-byte header, the bitmap, a CRC-32C.
const (
	mapMagic      = "SMOLCOW1"
	mapVersion    = 1
	mapHeaderSize = 32
	// MapSuffix is appended to the overlay path to name its block map.
	MapSuffix = ".map"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockMap is the written-block bitmap of an overlay: bit i (LSB first in
// byte i/8) set means block i is in the overlay file.
type blockMap struct {
	blockSize uint32
	diskSize  uint64
	bits      []byte
}

func newBlockMap(diskSize uint64, blockSize uint32) *blockMap {
	n := (diskSize + uint64(blockSize) - 1) / uint64(blockSize)
	return &blockMap{blockSize: blockSize, diskSize: diskSize, bits: make([]byte, (n+7)/8)}
}

func (m *blockMap) blocks() uint64 {
	return (m.diskSize + uint64(m.blockSize) - 1) / uint64(m.blockSize)
}

func (m *blockMap) has(b uint64) bool { return m.bits[b/8]&(1<<(b%8)) != 0 }
func (m *blockMap) set(b uint64)      { m.bits[b/8] |= 1 << (b % 8) }

// count is the number of blocks set.
func (m *blockMap) count() uint64 {
	var n uint64
	for b := range m.blocks() {
		if m.has(b) {
			n++
		}
	}
	return n
}

func (m *blockMap) encode() []byte {
	le := binary.LittleEndian
	out := make([]byte, mapHeaderSize, mapHeaderSize+len(m.bits)+4)
	copy(out, mapMagic)
	le.PutUint32(out[8:], mapVersion)
	le.PutUint32(out[12:], m.blockSize)
	le.PutUint64(out[16:], m.diskSize)
	le.PutUint64(out[24:], m.blocks())
	out = append(out, m.bits...)
	return le.AppendUint32(out, crc32.Checksum(out, castagnoli))
}

// decodeBlockMap parses a map file's bytes; name is for errors.
func decodeBlockMap(name string, b []byte) (*blockMap, error) {
	le := binary.LittleEndian
	if len(b) < mapHeaderSize+4 {
		return nil, fmt.Errorf("%w: %s: %d bytes, shorter than a header", ErrCorrupt, name, len(b))
	}
	if string(b[:8]) != mapMagic {
		return nil, fmt.Errorf("%w: %s: magic %q, want %q", ErrCorrupt, name, b[:8], mapMagic)
	}
	if v := le.Uint32(b[8:]); v != mapVersion {
		return nil, fmt.Errorf("%w: %s: version %d, this smolvm reads %d", ErrCorrupt, name, v, mapVersion)
	}
	bs, size, blocks := le.Uint32(b[12:]), le.Uint64(b[16:]), le.Uint64(b[24:])
	if bs < 512 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("%w: %s: block size %d is not a power of two >= 512", ErrCorrupt, name, bs)
	}
	if want := (size + uint64(bs) - 1) / uint64(bs); blocks != want {
		return nil, fmt.Errorf("%w: %s: %d blocks for %d bytes of %d, want %d", ErrCorrupt, name, blocks, size, bs, want)
	}
	if want := mapHeaderSize + (blocks+7)/8 + 4; uint64(len(b)) != want {
		return nil, fmt.Errorf("%w: %s: %d bytes, want %d", ErrCorrupt, name, len(b), want)
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return nil, fmt.Errorf("%w: %s: checksum %#08x, stored %#08x", ErrCorrupt, name, got, sum)
	}
	return &blockMap{blockSize: bs, diskSize: size, bits: append([]byte(nil), b[mapHeaderSize:len(b)-4]...)}, nil
}

// writeFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("disk: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("disk: fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("disk: fsync %s: %w", dir, err)
	}
	return nil
}
