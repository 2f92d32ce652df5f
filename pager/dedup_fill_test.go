package pager

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// A fault on a page whose slot deduplication shares with a thousand pages
// all over memory copies the faulting page's neighbours in its frame, not
// all thousand (each a copy call, holding the worker): at most twice the
// frame's slots. The page read is right, and the others still fault in
// right when touched.
func TestDemandFillSkipsDedupFanOut(t *testing.T) {
	const pages = 4096
	img := make([]byte, pages*PageSize)
	rng := rand.New(rand.NewPCG(5, 6))
	common := make([]byte, PageSize)
	for i := range common {
		common[i] = byte(i*7 + 1)
	}
	for p := 0; p < pages; p++ {
		dst := img[p*PageSize : (p+1)*PageSize]
		if p%4 == 3 {
			copy(dst, common) // 1024 copies of one page
			continue
		}
		for i := range dst {
			dst[i] = byte(rng.Uint32())
		}
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "memory.raw")
	if err := os.WriteFile(raw, img, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "vm.smolmachine")
	if _, err := chunkstore.Pack(context.Background(), path, chunkstore.PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "amd64", VCPUs: 1, MemoryBytes: pages * PageSize}},
		Inputs:   []chunkstore.PackInput{{Name: "memory", Path: raw}},
	}); err != nil {
		t.Fatal(err)
	}
	b, err := chunkstore.Open(path, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	im, err := b.Image("memory")
	if err != nil {
		t.Fatal(err)
	}
	e, _ := im.Locate(2003)
	if fan := extentPages(im.FrameExtents(int(e.Frame))); fan < 1000 {
		t.Fatalf("the common page's frame backs %d pages: the test image did not deduplicate", fan)
	}
	slots := int64(format.DefaultFramePages)
	sock := testServer(t, &Server{Open: b.Image})
	for _, tc := range []struct {
		name    string
		list    []int64
		maxCopy int64
	}{
		{"one common page", []int64{2003}, 2 * slots},
		{"every page", nil, pages},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := helperConfig{Socket: sock, Image: testImageConfig(pages), Source: raw, Threads: 1, Method: "direct", Pattern: "seq"}
			if tc.list != nil {
				cfg.Pattern, cfg.List = "list", tc.list
			}
			out := runClient(t, cfg, 60*time.Second)
			if out.code != exitOK {
				t.Fatalf("client exit %d\n%s", out.code, out.stderr)
			}
			touched := int64(len(tc.list))
			if tc.list == nil {
				touched = pages
			}
			if st := out.res.Stats; st.PagesCopied > tc.maxCopy {
				t.Errorf("%d pages copied for %d touched, want at most %d: %+v", st.PagesCopied, touched, tc.maxCopy, st)
			}
		})
	}
}
