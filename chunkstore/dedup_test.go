package chunkstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// storeBytes sums the frame files of a directory store.
func storeBytes(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && filepath.Ext(p) != ".pages" {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// A second image with 5% of its (non-zero) pages rewritten at random adds at
// most 10% new bytes to a store (the goal), through --store and
// --parent. docs/FORMAT.md also gives the figure when zero pages may be
// picked too (then 5% of all pages is 12% of the data pages).
func TestDedupFivePercent(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := sampleimage.WriteFile(base, 32<<20, sampleimage.MemoryMix, 3); err != nil {
		t.Fatal(err)
	}
	orig, _ := os.ReadFile(base)
	next := filepath.Join(dir, "next.img")
	os.WriteFile(next, orig, 0o644)
	if _, err := sampleimage.Mutate(next, 0.05, 4, true); err != nil {
		t.Fatal(err)
	}
	changed, _ := os.ReadFile(next)

	s, _ := OpenDir(filepath.Join(dir, "store"))
	r1, err := Pack(ctxT(t), filepath.Join(dir, "1.smolmachine"), PackOptions{Store: s, Inputs: []PackInput{{Name: "memory", Path: base}}})
	if err != nil {
		t.Fatal(err)
	}
	after1 := storeBytes(t, s.Dir())
	r2, err := Pack(ctxT(t), filepath.Join(dir, "2.smolmachine"), PackOptions{Store: s, Inputs: []PackInput{{Name: "memory", Path: next}}})
	if err != nil {
		t.Fatal(err)
	}
	added := storeBytes(t, s.Dir()) - after1
	t.Logf("base: %d bytes in store (%d pages); second: +%d bytes (%.1f%%), %d new pages, %d reused",
		after1, r1.DataPages, added, 100*float64(added)/float64(after1), r2.NewPages, r2.ReusedPages)
	if added > after1/10 {
		t.Fatalf("5%% changed pages added %d bytes to a %d-byte store: more than 10%%", added, after1)
	}
	if added != r2.NewBytes {
		t.Errorf("store grew by %d bytes, pack reported %d new", added, r2.NewBytes)
	}
	for name, want := range map[string][]byte{"1.smolmachine": orig, "2.smolmachine": changed} {
		b := openBundle(t, filepath.Join(dir, name), Options{StoreDir: s.Dir()})
		im, _ := b.Image("memory")
		if !bytes.Equal(readAll(t, im), want) {
			t.Fatalf("%s: image differs", name)
		}
	}

	// --parent without a store: only new pages are compressed; the parent's
	// frames the new image uses are copied raw.
	parent := openBundle(t, filepath.Join(dir, "1.smolmachine"), Options{StoreDir: s.Dir()})
	r3, err := Pack(ctxT(t), filepath.Join(dir, "3.smolmachine"), PackOptions{Parent: parent, Inputs: []PackInput{{Name: "memory", Path: next}}})
	if err != nil {
		t.Fatal(err)
	}
	if r3.NewPages != r2.NewPages || r3.CopiedFrames == 0 || r3.NewBytes > after1/10 {
		t.Fatalf("parent pack: %+v (store pack had %d new pages)", r3, r2.NewPages)
	}
	b3 := openBundle(t, filepath.Join(dir, "3.smolmachine"), Options{})
	im, _ := b3.Image("memory")
	if !bytes.Equal(readAll(t, im), changed) {
		t.Fatal("parent pack: image differs")
	}
	if _, err := b3.Verify(ctxT(t), nil); err != nil {
		t.Fatal(err)
	}
	if st := b3.Format().Stats(); st.ExternalFrames != 0 || st.Frames != r3.Frames {
		t.Fatalf("parent pack without a store must be self-contained: %+v", st)
	}
	_ = format.PageSize
}
