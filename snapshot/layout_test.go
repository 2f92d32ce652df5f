package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager"
)

// layoutImage is a synthetic guest image: zero pages, compressible text
// pages, random pages, and repeats of earlier pages (pages that share a
// frame slot).
func layoutImage(pages int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	mem := make([]byte, pages*format.PageSize)
	for p := 0; p < pages; p++ {
		pg := mem[p*format.PageSize : (p+1)*format.PageSize]
		switch p % 7 {
		case 0, 4: // zero
		case 1, 5:
			copy(pg, bytes.Repeat([]byte(fmt.Sprintf("page %d of a guest: some kernel text ", p)), 200))
		case 3:
			if p > 20 {
				copy(pg, mem[(p-17)*format.PageSize:(p-16)*format.PageSize])
				continue
			}
			fallthrough
		default:
			for i := range pg {
				pg[i] = byte(rng.Uint32())
			}
		}
	}
	return mem
}

// packLayout packs memory (and disk/root, when set) into a bundle, thin
// when store is set, and returns its path.
func packLayout(t *testing.T, dir string, mem, disk []byte, store string, framePages int) string {
	t.Helper()
	inputs := []chunkstore.PackInput{}
	for name, b := range map[string][]byte{format.ArtifactMemory: mem, "disk/root": disk} {
		if b == nil {
			continue
		}
		p := filepath.Join(dir, filepath.Base(name)+".raw")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, chunkstore.PackInput{Name: name, Path: p})
	}
	po := chunkstore.PackOptions{
		Manifest:   format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1, MemoryBytes: int64(len(mem))}},
		Inputs:     inputs,
		FramePages: framePages,
	}
	if store != "" {
		ds, err := chunkstore.OpenDir(store)
		if err != nil {
			t.Fatal(err)
		}
		po.Store = ds
	}
	path := filepath.Join(dir, "b.smolmachine")
	if _, err := chunkstore.Pack(context.Background(), path, po); err != nil {
		t.Fatal(err)
	}
	return path
}

// readAll reads every image of the bundle at path (verifying it first).
func readAll(t *testing.T, path, store string) (map[string][]byte, *format.Manifest, []format.FrameInfo) {
	t.Helper()
	b, err := chunkstore.Open(path, chunkstore.Options{StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Verify(context.Background(), nil); err != nil {
		t.Fatalf("verify %s: %v", path, err)
	}
	out := map[string][]byte{}
	man := b.Manifest()
	for _, a := range man.Artifacts {
		img, err := b.Image(a.Name)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, img.Size())
		if _, err := img.ReadAt(buf, 0); err != nil {
			t.Fatalf("read %s: %v", a.Name, err)
		}
		out[a.Name] = buf
	}
	return out, man, b.Format().Frames()
}

// TestWorkingSetLayout: after SetWorkingSet every image reads back
// bit-identical and verifies, the working set's non-zero pages of internal
// frames sit in the first frames in first-touch order (32 to a frame),
// external frames (a thin bundle) are left as they were, and a second
// SetWorkingSet with the same list gives the same frames.
func TestWorkingSetLayout(t *testing.T) {
	const pages = 4096 // 16 MiB
	mem := layoutImage(pages, 1)
	disk := layoutImage(512, 1) // shares pages with memory
	// First touch: a scattered walk, a run, pages touched again, zero
	// pages, a range past the end.
	var ranges []pager.PageRange
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 300; i++ {
		ranges = append(ranges, pager.PageRange{Artifact: "memory", Page: int64(rng.IntN(pages)), Count: 1})
	}
	ranges = append(ranges, pager.PageRange{Artifact: "memory", Page: 1000, Count: 70},
		pager.PageRange{Artifact: "memory", Page: 1010, Count: 5}, pager.PageRange{Artifact: "disk/root", Page: 3, Count: 9},
		pager.PageRange{Artifact: "memory", Page: pages - 2, Count: 100})
	ws := &pager.WorkingSet{Version: 1, PageSize: format.PageSize, Ranges: ranges}

	for _, tc := range []struct {
		name       string
		thin       bool
		framePages int
	}{
		{"thick-32", false, 32},
		{"thick-8", false, 8},
		{"thick-1024", false, 1024},
		{"thin-32", true, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := ""
			if tc.thin {
				store = filepath.Join(dir, "store")
			}
			path := packLayout(t, dir, mem, disk, store, tc.framePages)
			before, _, framesBefore := readAll(t, path, store)
			sizeBefore := fileSize(t, path)
			st, err := setWorkingSet(context.Background(), path, store, ws)
			if err != nil {
				t.Fatal(err)
			}
			after, man, frames := readAll(t, path, store)
			for name, want := range map[string][]byte{"memory": mem, "disk/root": disk} {
				if !bytes.Equal(before[name], want) {
					t.Fatalf("%s differs before the layout", name)
				}
				got := after[name]
				if len(got) != len(want) {
					t.Fatalf("%s: %d bytes, want %d", name, len(got), len(want))
				}
				for p := 0; p < len(want)/format.PageSize; p++ {
					if o := p * format.PageSize; !bytes.Equal(got[o:o+format.PageSize], want[o:o+format.PageSize]) {
						t.Fatalf("%s page %d differs after the layout", name, p)
					}
				}
			}
			// The expected hot list: non-zero memory pages, first touch
			// first, each once.
			var hot []int64
			seen := map[int64]bool{}
			for _, r := range ranges {
				for pg := r.Page; pg < min(r.Page+r.Count, pages); pg++ {
					zero := bytes.Equal(mem[pg*format.PageSize:(pg+1)*format.PageSize], make([]byte, format.PageSize))
					if r.Artifact == "memory" && !zero && !seen[pg] {
						seen[pg] = true
						hot = append(hot, pg)
					}
				}
			}
			memArt := man.Artifact("memory")
			sizeAfter := fileSize(t, path)
			t.Logf("%s: %d hot pages in %d frames, %d frames rewritten, %d dropped; frames %d -> %d; bundle %d -> %d bytes (%+.2f%%)",
				tc.name, st.HotPages, st.HotFrames, st.Rewritten, st.Dropped, len(framesBefore), len(frames),
				sizeBefore, sizeAfter, 100*float64(sizeAfter-sizeBefore)/float64(sizeBefore))
			if tc.thin {
				if st.HotPages != 0 || len(frames) != len(framesBefore) {
					t.Fatalf("thin bundle: %d pages moved, frames %d -> %d; want external frames left alone", st.HotPages, len(framesBefore), len(frames))
				}
				for i := range frames {
					if frames[i].Digest != framesBefore[i].Digest || !frames[i].External {
						t.Fatalf("thin bundle: frame %d changed", i)
					}
				}
				return
			}
			if st.HotPages != len(hot) || st.HotFrames != (len(hot)+31)/32 {
				t.Fatalf("layout moved %d pages into %d frames, want %d pages in %d", st.HotPages, st.HotFrames, len(hot), (len(hot)+31)/32)
			}
			for k, pg := range hot {
				e, ok := memArt.Locate(pg)
				if !ok {
					t.Fatalf("hot page %d has no extent", pg)
				}
				if f, s := e.Frame, e.Slot+int32(pg-e.Page); f != int32(k/32) || s != int32(k%32) {
					t.Fatalf("hot page %d (touch %d) in frame %d slot %d, want frame %d slot %d", pg, k, f, s, k/32, k%32)
				}
			}
			// No stored slot is dead weight: every internal slot is referred to.
			used := make([]map[int32]bool, len(frames))
			for _, a := range man.Artifacts {
				for _, e := range a.Extents {
					if used[e.Frame] == nil {
						used[e.Frame] = map[int32]bool{}
					}
					for s := e.Slot; s < e.Slot+e.Count; s++ {
						used[e.Frame][s] = true
					}
				}
			}
			for i := range frames {
				if len(used[i]) != frames[i].Pages() {
					t.Fatalf("frame %d: %d of %d slots referred to", i, len(used[i]), frames[i].Pages())
				}
			}
			if sizeAfter > sizeBefore+sizeBefore/20 {
				t.Errorf("bundle grew from %d to %d bytes (> 5%%)", sizeBefore, sizeAfter)
			}
			// The same list again: the same frames.
			if _, err := setWorkingSet(context.Background(), path, store, ws); err != nil {
				t.Fatal(err)
			}
			again, _, frames2 := readAll(t, path, store)
			if !bytes.Equal(again["memory"], mem) || !bytes.Equal(again["disk/root"], disk) {
				t.Fatal("images differ after a second layout")
			}
			if len(frames2) != len(frames) {
				t.Fatalf("second layout: %d frames, first %d", len(frames2), len(frames))
			}
			for i := range frames {
				if frames2[i].Digest != frames[i].Digest {
					t.Fatalf("second layout: frame %d is %s, first %s", i, frames2[i].Digest, frames[i].Digest)
				}
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
