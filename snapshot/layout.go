package snapshot

import (
	"context"
	"fmt"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager"
)

// LayoutStats describes what writeLayout did to a bundle's frames.
type LayoutStats struct {
	// HotPages is the number of working-set memory pages moved into
	// frames of their own; HotFrames the frames that hold them.
	HotPages  int
	HotFrames int
	// Rewritten frames lost pages to the working set and were written
	// again with the pages still referred to; Dropped ones lost them all.
	Rewritten int
	Dropped   int
	// Frames is the frame count after the layout.
	Frames int
}

// slotRef names one page of a frame.
type slotRef struct{ frame, slot int32 }

// writeLayout writes the frames of b into w with the working set's memory
// pages (man.WorkingSet, first touch first) gathered into frames of their
// own, format.DefaultFramePages pages each, written first: a lazy start
// then fetches frames that hold just the pages the guest touches instead
// of every address-ordered frame one of them lies in. A frame that lost
// pages to them is written again with only the slots still referred to
// (one that lost them all is dropped); the others are copied raw, external
// frames stay references (their pages are not moved: a thin bundle stays
// thin). man.Artifacts' extents are rewritten to the new frames; every
// image reads back the same bytes.
func writeLayout(ctx context.Context, b *chunkstore.Bundle, man *format.Manifest, w *format.Writer) (LayoutStats, error) {
	var st LayoutStats
	frames := b.Format().Frames()
	man.Artifacts = append([]format.Artifact(nil), man.Artifacts...)

	// The working set's pages that live in internal frames, each once.
	var hotPages []int64
	var hotFrom []slotRef
	isHot := map[int64]bool{}
	if mem := man.Artifact(format.ArtifactMemory); mem != nil {
		last := (mem.Size + format.PageSize - 1) / format.PageSize
		for _, r := range man.WorkingSet {
			end := min(r.Page+r.Count, last)
			for pg := max(r.Page, 0); pg < end; pg++ {
				e, ok := mem.Locate(pg)
				if !ok || isHot[pg] || frames[e.Frame].External {
					continue
				}
				isHot[pg] = true
				hotPages = append(hotPages, pg)
				hotFrom = append(hotFrom, slotRef{e.Frame, e.Slot + int32(pg-e.Page)})
			}
		}
	}

	// The slots still referred to once the hot pages have moved.
	keep := make([][]bool, len(frames))
	kept := make([]int, len(frames))
	for _, a := range man.Artifacts {
		isMem := a.Name == format.ArtifactMemory
		for _, e := range a.Extents {
			if keep[e.Frame] == nil {
				keep[e.Frame] = make([]bool, frames[e.Frame].Pages())
			}
			for pg := e.Page; pg < e.End(); pg++ {
				if isMem && isHot[pg] {
					continue
				}
				if s := e.Slot + int32(pg-e.Page); !keep[e.Frame][s] {
					keep[e.Frame][s] = true
					kept[e.Frame]++
				}
			}
		}
	}

	// Hot frames first, in first-touch order.
	hot := make(map[int64]slotRef, len(hotPages))
	var data []byte
	var digs []format.Digest
	var pending []int64
	flush := func() error {
		if len(digs) == 0 {
			return nil
		}
		idx, err := w.AddFrame(format.EncodeFrame(nil, data), digs)
		if err != nil {
			return fmt.Errorf("working-set frame %d: %w", st.HotFrames, err)
		}
		for k, pg := range pending {
			hot[pg] = slotRef{int32(idx), int32(k)}
		}
		st.HotFrames++
		data, digs, pending = data[:0], nil, nil
		return nil
	}
	var cached []byte
	cachedIdx := int32(-1)
	for k, pg := range hotPages {
		from := hotFrom[k]
		if from.frame != cachedIdx {
			full, err := b.Frame(ctx, int(from.frame))
			if err != nil {
				return st, fmt.Errorf("memory page %d: %w", pg, err)
			}
			cached, cachedIdx = full, from.frame
		}
		off := int(from.slot) * format.PageSize
		data = append(data, cached[off:off+format.PageSize]...)
		digs = append(digs, frames[from.frame].PageDigests[from.slot])
		pending = append(pending, pg)
		if len(digs) == format.DefaultFramePages {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	st.HotPages = len(hotPages)

	// The other frames in table order: newFrame[i] is frame i's new index
	// (-1: dropped); newSlot[i], when set, maps its slots (rewritten).
	newFrame := make([]int32, len(frames))
	newSlot := make([][]int32, len(frames))
	var raw []byte
	for i := range frames {
		f := &frames[i]
		var idx int
		var err error
		switch {
		case kept[i] == 0:
			newFrame[i] = -1
			if keep[i] != nil {
				st.Dropped++
			}
			continue
		case f.External:
			idx, err = w.AddExternalFrame(f.Length, f.PageDigests)
		case kept[i] == f.Pages():
			if raw, err = b.Format().ReadRaw(i, raw); err == nil {
				idx, err = w.AddFrame(raw, f.PageDigests)
			}
		default:
			idx, newSlot[i], err = addKept(ctx, b, w, i, keep[i])
			st.Rewritten++
		}
		if err != nil {
			return st, fmt.Errorf("frame %d (%s): %w", i, f.Digest, err)
		}
		newFrame[i] = int32(idx)
	}
	st.Frames = w.Frames()

	for a := range man.Artifacts {
		art := &man.Artifacts[a]
		isMem := art.Name == format.ArtifactMemory
		var ext []format.Extent
		for _, e := range art.Extents {
			for pg := e.Page; pg < e.End(); pg++ {
				to, ok := hot[pg]
				if !isMem || !ok {
					s := e.Slot + int32(pg-e.Page)
					to = slotRef{newFrame[e.Frame], s}
					if m := newSlot[e.Frame]; m != nil {
						to.slot = m[s]
					}
				}
				if n := len(ext); n > 0 && ext[n-1].End() == pg && ext[n-1].Frame == to.frame && ext[n-1].Slot+ext[n-1].Count == to.slot {
					ext[n-1].Count++
					continue
				}
				ext = append(ext, format.Extent{Page: pg, Count: 1, Frame: to.frame, Slot: to.slot})
			}
		}
		art.Extents = ext
	}
	return st, nil
}

// addKept writes frame i of b again with only the slots keep marks, in
// slot order, and returns its new index and the old-to-new slot map.
func addKept(ctx context.Context, b *chunkstore.Bundle, w *format.Writer, i int, keep []bool) (int, []int32, error) {
	f := &b.Format().Frames()[i]
	full, err := b.Frame(ctx, i)
	if err != nil {
		return 0, nil, err
	}
	var d []byte
	var dg []format.Digest
	m := make([]int32, len(keep))
	for s, k := range keep {
		m[s] = -1
		if k {
			m[s] = int32(len(dg))
			d = append(d, full[s*format.PageSize:(s+1)*format.PageSize]...)
			dg = append(dg, f.PageDigests[s])
		}
	}
	idx, err := w.AddFrame(format.EncodeFrame(nil, d), dg)
	return idx, m, err
}

// setWorkingSet rewrites the bundle at path with ws's memory ranges as the
// manifest's working set and the working-set layout (writeLayout), into a
// temporary file renamed over path; it returns what the layout did.
func setWorkingSet(ctx context.Context, path, storeDir string, ws *pager.WorkingSet) (LayoutStats, error) {
	var st LayoutStats
	b, err := chunkstore.Open(path, chunkstore.Options{StoreDir: storeDir})
	if err != nil {
		return st, fmt.Errorf("snapshot: set working set: %w", err)
	}
	defer b.Close()
	man := *b.Format().Manifest()
	man.WorkingSet = nil
	for _, pr := range ws.Ranges {
		if pr.Artifact == format.ArtifactMemory {
			man.WorkingSet = append(man.WorkingSet, format.PageRange{Page: pr.Page, Count: pr.Count})
		}
	}
	out, err := chunkstore.CreateAtomic(path)
	if err != nil {
		return st, fmt.Errorf("snapshot: set working set: %w", err)
	}
	defer out.Abort()
	w, err := format.NewWriter(out)
	if err != nil {
		return st, fmt.Errorf("snapshot: set working set: %w", err)
	}
	if st, err = writeLayout(ctx, b, &man, w); err != nil {
		return st, fmt.Errorf("snapshot: set working set: %s: layout: %w", path, err)
	}
	man.TOC = ""
	if _, err := w.Finish(&man); err != nil {
		return st, fmt.Errorf("snapshot: set working set: %w", err)
	}
	if err := out.Commit(); err != nil {
		return st, fmt.Errorf("snapshot: set working set: %w", err)
	}
	return st, nil
}
