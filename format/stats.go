package format

// ArtifactStats summarises one artifact's page map.
type ArtifactStats struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Pages spans the image; ZeroPages of them are stored nowhere;
	// DataPages = Pages - ZeroPages are mapped to frame slots.
	Pages     int64 `json:"pages"`
	ZeroPages int64 `json:"zero_pages"`
	DataPages int64 `json:"data_pages"`
	Extents   int   `json:"extents"`
	// Frames is how many distinct frames the artifact reads from.
	Frames int `json:"frames"`
}

// Stats summarises a bundle from its TOC and manifest alone (no frame data
// is read). Logical bytes are what the artifacts expand to; stored bytes are
// the compressed frames (in the file, or external in a store).
type Stats struct {
	Artifacts      []ArtifactStats `json:"artifacts"`
	LogicalBytes   int64           `json:"logical_bytes"`
	ZeroBytes      int64           `json:"zero_bytes"`
	DataPages      int64           `json:"data_pages"`
	UniquePages    int64           `json:"unique_pages"`
	Frames         int             `json:"frames"`
	ExternalFrames int             `json:"external_frames"`
	FrameSlots     int64           `json:"frame_slots"`
	// StoredBytes are the compressed bytes of frames inside the file;
	// ExternalBytes those of frames in a store.
	StoredBytes   int64 `json:"stored_bytes"`
	ExternalBytes int64 `json:"external_bytes"`
	// DedupRatio is data pages / unique pages (1 = no page repeats);
	// CompressionRatio is unique page bytes / compressed frame bytes.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
	ManifestDigest   Digest  `json:"-"`
	FileBytes        int64   `json:"file_bytes"`
}

// Stats computes the bundle's Stats.
func (r *Reader) Stats() Stats {
	s := Stats{Frames: len(r.frames), ManifestDigest: r.trailer.ManifestDigest, FileBytes: r.size}
	unique := make(map[Digest]struct{})
	for _, a := range r.manifest.Artifacts {
		as := ArtifactStats{Name: a.Name, Size: a.Size, Pages: a.Pages(), Extents: len(a.Extents)}
		frames := make(map[int32]struct{})
		for _, e := range a.Extents {
			as.DataPages += int64(e.Count)
			frames[e.Frame] = struct{}{}
			f := &r.frames[e.Frame]
			for _, d := range f.PageDigests[e.Slot : e.Slot+e.Count] {
				unique[d] = struct{}{}
			}
		}
		as.ZeroPages = as.Pages - as.DataPages
		as.Frames = len(frames)
		s.Artifacts = append(s.Artifacts, as)
		s.LogicalBytes += a.Size
		s.DataPages += as.DataPages
		zero := as.ZeroPages * PageSize
		if zero > 0 && a.Size%PageSize != 0 {
			// The partial last page counts only its real bytes.
			last := a.Pages() - 1
			if _, ok := locate(a.Extents, last); !ok {
				zero -= PageSize - a.Size%PageSize
			}
		}
		s.ZeroBytes += zero
	}
	s.UniquePages = int64(len(unique))
	for i := range r.frames {
		f := &r.frames[i]
		s.FrameSlots += int64(f.Pages())
		if f.External {
			s.ExternalFrames++
			s.ExternalBytes += f.Length
		} else {
			s.StoredBytes += f.Length
		}
	}
	if s.UniquePages > 0 {
		s.DedupRatio = float64(s.DataPages) / float64(s.UniquePages)
	}
	if c := s.StoredBytes + s.ExternalBytes; c > 0 {
		s.CompressionRatio = float64(s.FrameSlots*PageSize) / float64(c)
	}
	return s
}

// locate finds the extent holding page in sorted extents.
func locate(es []Extent, page int64) (Extent, bool) {
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].End() <= page {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(es) && es[lo].Page <= page {
		return es[lo], true
	}
	return Extent{}, false
}

// Locate returns the extent holding page in a's sorted extents, or ok=false
// for a zero page.
func (a *Artifact) Locate(page int64) (Extent, bool) { return locate(a.Extents, page) }
