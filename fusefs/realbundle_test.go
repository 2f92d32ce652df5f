package fusefs

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/smolvm/smolvm/format"
)

// writeSpecBundle writes spec as a real .smolmachine bundle with
// format.Writer: each image's non-zero pages in order, FramePages to a
// frame, so frame numbers match the fake's; then damages the frames listed
// in Corrupt by flipping a byte of their compressed data.
func writeSpecBundle(t testing.TB, spec fakeSpec) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.smolmachine")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := format.NewWriter(bw)
	if err != nil {
		t.Fatal(err)
	}
	m := &format.Manifest{Config: format.Config{Arch: "amd64", VCPUs: 1, MemoryBytes: 1 << 30}}
	var corrupt []int
	for _, is := range spec.Images {
		a := format.Artifact{Name: is.Name, Size: is.Size}
		pages := (is.Size + format.PageSize - 1) / format.PageSize
		var buf []byte
		var digests []format.Digest
		var first []int64 // page of each slot
		base := w.Frames()
		flush := func() {
			if len(digests) == 0 {
				return
			}
			idx, err := w.AddFrame(format.EncodeFrame(nil, buf), slices.Clone(digests))
			if err != nil {
				t.Fatal(err)
			}
			for slot, p := range first {
				n := len(a.Extents) - 1
				if n >= 0 && a.Extents[n].End() == p && a.Extents[n].Frame == int32(idx) {
					a.Extents[n].Count++
				} else {
					a.Extents = append(a.Extents, format.Extent{Page: p, Count: 1, Frame: int32(idx), Slot: int32(slot)})
				}
			}
			buf, digests, first = buf[:0], digests[:0], first[:0]
		}
		page := make([]byte, format.PageSize)
		for p := int64(0); p < pages; p++ {
			if pageIsZero(is.Seed, p) {
				continue
			}
			clear(page)
			fillPage(is.Seed, p, page[:min(format.PageSize, is.Size-p*format.PageSize)])
			buf = append(buf, page...)
			digests = append(digests, format.PageDigest(page))
			first = append(first, p)
			if len(digests) == spec.FramePages {
				flush()
			}
		}
		flush()
		for _, c := range is.Corrupt {
			corrupt = append(corrupt, base+c)
		}
		m.Artifacts = append(m.Artifacts, a)
	}
	offsets := map[int]int64{}
	for _, c := range corrupt {
		fi := w.Frame(c)
		offsets[c] = fi.Offset + fi.Length/2
	}
	if _, err := w.Finish(m); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, off := range offsets {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x5a
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
