package chunkstore

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/sampleimage"
)

// helperEnv selects a child-process mode of the test binary (see
// TestAtomicFileKill).
const helperEnv = "CHUNKSTORE_TEST_HELPER"

var benchDir string

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "atomic":
		atomicHelper()
		return
	case "pack":
		packHelper()
		return
	}
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

// writeFile writes b to a new file in t's temp dir.
func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// sample returns n bytes of sample image (MemoryMix) for seed.
func sample(t testing.TB, n int64, seed uint64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := sampleimage.Write(&buf, n, sampleimage.MemoryMix, seed); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads an image whole through ReadAt.
func readAll(t testing.TB, im Image) []byte {
	t.Helper()
	got, err := io.ReadAll(io.NewSectionReader(im, 0, im.Size()))
	if err != nil {
		t.Fatalf("reading %s: %v", im.Name(), err)
	}
	return got
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openBundle opens path and closes it at cleanup.
func openBundle(t testing.TB, path string, opts Options) *Bundle {
	t.Helper()
	b, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
