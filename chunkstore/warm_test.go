package chunkstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/format"
)

// Warm fills the cache: the frames it read are then served without a
// fetch; a bad frame index is reported without stopping the others; a
// cancelled context stops it with the context's error.
func TestWarm(t *testing.T) {
	file, _ := smallBundle(t, 24*format.PageSize, 2)
	path := filepath.Join(t.TempDir(), "b.smolmachine")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		frames    func(n int) []int
		cancelled bool
		wantN     func(n int) int
		wantErr   error
	}{
		{"all", func(n int) []int { return seq(n) }, false, func(n int) int { return n }, nil},
		{"bad index", func(n int) []int { return append([]int{n + 5}, seq(n)...) }, false, func(n int) int { return n }, ErrNotFound},
		{"cancelled", func(n int) []int { return seq(n) }, true, func(int) int { return 0 }, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			n := len(b.Format().Frames())
			if n < 4 {
				t.Fatalf("test bundle has %d frames, want several", n)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			got, err := b.Warm(ctx, tc.frames(n), 3)
			if got != tc.wantN(n) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Warm: %d frames, %v; want %d, %v", got, err, tc.wantN(n), tc.wantErr)
			}
			if tc.cancelled {
				return
			}
			before := b.Stats()
			if before.FramesFetched != int64(n) {
				t.Fatalf("warming fetched %d frames, want %d", before.FramesFetched, n)
			}
			for i := range n {
				if _, err := b.Frame(context.Background(), i); err != nil {
					t.Fatal(err)
				}
			}
			after := b.Stats()
			if after.FramesFetched != before.FramesFetched || after.CacheHits-before.CacheHits != int64(n) {
				t.Fatalf("reads after warming: fetched %d more, %d cache hits; want 0 and %d",
					after.FramesFetched-before.FramesFetched, after.CacheHits-before.CacheHits, n)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}
