package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
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

// TestConsoleTail: a failed recording quotes the end of the clone's
// console: the last lines, CRs and blank lines dropped, bounded in bytes.
func TestConsoleTail(t *testing.T) {
	many := ""
	for i := range 40 {
		many += fmt.Sprintf("line %d\r\n", i)
	}
	for _, tc := range []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{"nothing", nil, 64, "; the guest printed nothing on its console since the restore"},
		{"blank", []string{"\r\n\n  \n"}, 64, "; the guest printed nothing on its console since the restore"},
		{"split writes", []string{"[ 1.0] vsock: re", "set\r\nsmolvm-agent: session: agent: identity: write: connection reset\r\n"}, 256,
			"; guest console (last lines): [ 1.0] vsock: reset | smolvm-agent: session: agent: identity: write: connection reset"},
		{"last lines", []string{many}, 4096, "; guest console (last lines): " + strings.Join(linesFrom(25, 40), " | ")},
		{"bounded bytes", []string{"first line\n", "0123456789\n", "abc\n"}, 10, "; guest console (last lines): 56789 | abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &consoleTail{max: tc.max}
			for _, w := range tc.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if len(c.buf) > tc.max {
				t.Errorf("kept %d bytes, max %d", len(c.buf), tc.max)
			}
			if got := c.report(); got != tc.want {
				t.Errorf("report:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func linesFrom(a, b int) []string {
	var out []string
	for i := a; i < b; i++ {
		out = append(out, fmt.Sprintf("line %d", i))
	}
	return out
}
