package vmm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRAMFileOffset(t *testing.T) {
	const gib = int64(1) << 30
	tests := []struct {
		mem    int64
		region int
		want   int64
	}{
		{256 << 20, 0, 0},
		{3 * gib, 0, 0},
		{5 * gib, 0, 0},
		{5 * gib, 1, 3 * gib}, // the part above 4 GiB follows low RAM in the image
	}
	for _, tc := range tests {
		if got := RAMFileOffset(tc.mem, tc.region); got != tc.want {
			t.Errorf("RAMFileOffset(%d, %d) = %d, want %d", tc.mem, tc.region, got, tc.want)
		}
	}
}

// TestMapMemoryFile maps a RAM image privately: the machine sees the
// file's bytes, its writes do not reach the file, and a short file is
// refused naming the sizes.
func TestMapMemoryFile(t *testing.T) {
	const size = MinMemBytes
	dir := t.TempDir()
	img := bytes.Repeat([]byte("smolvm-ram-image"), size/16)
	path := filepath.Join(dir, "memory")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Machine{cfg: Config{MemBytes: size, Memory: MemoryBacking{File: path}}}
	if err := m.allocMemory(); err != nil {
		t.Fatal(err)
	}
	ram := m.RAM()
	if len(ram) != 1 || !bytes.Equal(ram[0].Data, img) {
		t.Fatalf("mapped RAM differs from the image")
	}
	copy(ram[0].Data[4096:], "written by the guest")
	for _, mem := range m.mem {
		mem.Close()
	}
	if err := m.unmapFiles(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, img) {
		t.Fatal("a write to the private mapping reached the memory file")
	}

	short := &Machine{cfg: Config{MemBytes: 2 * size, Memory: MemoryBacking{File: path}}}
	err = short.allocMemory()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("short memory file: err = %v, want ErrConfig", err)
	}
	t.Logf("short file: %v", err)
	short.unmapFiles()
}
