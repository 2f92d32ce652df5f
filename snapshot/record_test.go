package snapshot

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager"
)

// TestSetWorkingSet: the rewritten bundle verifies, holds the same bytes,
// carries the memory ranges (others dropped) as its working set, and has a
// new manifest digest.
func TestSetWorkingSet(t *testing.T) {
	path, mem, before := packMemory(t, 2<<20)
	ws := &pager.WorkingSet{Version: 1, PageSize: 4096, Ranges: []pager.PageRange{
		{Artifact: "memory", Page: 40, Count: 32}, {Artifact: "disk/root", Page: 0, Count: 8}, {Artifact: "memory", Page: 3, Count: 1},
	}}
	if err := SetWorkingSet(path, "", ws); err != nil {
		t.Fatal(err)
	}
	b, err := chunkstore.Open(path, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := []format.PageRange{{Page: 40, Count: 32}, {Page: 3, Count: 1}}
	if got := b.Manifest().WorkingSet; !reflect.DeepEqual(got, want) {
		t.Fatalf("working set %+v, want %+v", got, want)
	}
	if b.Format().ManifestDigest() == before {
		t.Fatal("manifest digest unchanged")
	}
	if _, err := b.Verify(context.Background(), nil); err != nil {
		t.Fatalf("verify: %v", err)
	}
	img, err := b.Image(format.ArtifactMemory)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, img.Size())
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Fatal("memory changed")
	}
}
