package format

import (
	"fmt"
	"strings"
)

// Artifact names. A disk is "disk/" followed by its name.
const (
	ArtifactKernel = "kernel"
	ArtifactInitrd = "initrd"
	ArtifactMemory = "memory"
	ArtifactState  = "state"
	DiskPrefix     = "disk/"
)

// Manifest is the JSON document of a bundle: the machine's configuration and
// its artifacts. Extents are not in the JSON (they are binary, in the TOC);
// a Reader fills them in.
type Manifest struct {
	// Format is "smolmachine/v1".
	Format string `json:"format"`
	// TOC is the digest of the table of contents ("sha256:<hex>"), set by
	// the Writer: through it the manifest digest covers every frame and
	// extent, so it identifies the whole bundle.
	TOC       string     `json:"toc"`
	Config    Config     `json:"config"`
	Artifacts []Artifact `json:"artifacts"`
	// State names the artifact holding the saved machine state (an opaque
	// blob for the VMM), or is empty for a bundle that boots.
	State string `json:"state,omitempty"`
	// WorkingSet lists memory page ranges worth prefetching on resume, in
	// the order they were first touched.
	WorkingSet []PageRange `json:"working_set,omitempty"`
}

// ManifestFormat is the value of Manifest.Format.
const ManifestFormat = "smolmachine/v1"

// Config describes the virtual machine.
type Config struct {
	Arch        string   `json:"arch"`
	VCPUs       int      `json:"vcpus"`
	MemoryBytes int64    `json:"memory_bytes"`
	Cmdline     string   `json:"cmdline,omitempty"`
	Devices     []Device `json:"devices,omitempty"`
}

// Device is one virtual device. Kind is e.g. "virtio-blk", "virtio-net",
// "serial"; Artifact names the disk artifact backing a block device.
type Device struct {
	Kind     string `json:"kind"`
	Name     string `json:"name,omitempty"`
	Artifact string `json:"artifact,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// PageRange is Count pages starting at page Page of an image.
type PageRange struct {
	Page  int64 `json:"page"`
	Count int64 `json:"count"`
}

// Artifact is one image of the bundle.
type Artifact struct {
	Name string `json:"name"`
	// Size is the exact length in bytes.
	Size int64 `json:"size"`
	// Extents map the image's non-zero pages to frame slots, sorted by
	// Page, not overlapping (stored in the TOC, not in the JSON).
	Extents []Extent `json:"-"`
}

// Pages is the number of pages the image spans (the last may be partial).
func (a *Artifact) Pages() int64 { return (a.Size + PageSize - 1) / PageSize }

// Artifact returns the named artifact, or nil.
func (m *Manifest) Artifact(name string) *Artifact {
	for i := range m.Artifacts {
		if m.Artifacts[i].Name == name {
			return &m.Artifacts[i]
		}
	}
	return nil
}

// WorkingSetFrames lists the frames that hold the working set's memory
// pages, in first-touch order, each once (frames of pages past the memory
// artifact or never written, i.e. zero, are not listed).
func (m *Manifest) WorkingSetFrames() []int {
	a := m.Artifact(ArtifactMemory)
	if a == nil {
		return nil
	}
	seen := map[int32]bool{}
	var out []int
	for _, r := range m.WorkingSet {
		for pg := r.Page; pg < r.Page+r.Count; {
			e, ok := a.Locate(pg)
			if !ok {
				pg++
				continue
			}
			if !seen[e.Frame] {
				seen[e.Frame] = true
				out = append(out, int(e.Frame))
			}
			pg = e.End()
		}
	}
	return out
}

// ValidArtifactName reports whether name is kernel, initrd, memory, state or
// disk/NAME with NAME of 1..64 characters from [A-Za-z0-9._-].
func ValidArtifactName(name string) bool {
	switch name {
	case ArtifactKernel, ArtifactInitrd, ArtifactMemory, ArtifactState:
		return true
	}
	d, ok := strings.CutPrefix(name, DiskPrefix)
	if !ok || len(d) == 0 || len(d) > 64 || d == "." || d == ".." {
		return false
	}
	for _, c := range d {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkExtents validates an artifact's extents against its size and the
// frame table: sorted, non-overlapping, inside the image, slots inside
// their frame.
func checkExtents(a *Artifact, frames []FrameInfo) error {
	pages := a.Pages()
	var next int64
	for i, e := range a.Extents {
		switch {
		case e.Count <= 0:
			return corruptf("artifact %q extent %d: count %d", a.Name, i, e.Count)
		case e.Page < next:
			return corruptf("artifact %q extent %d: page %d overlaps or is out of order (next free page %d)", a.Name, i, e.Page, next)
		case e.Page > pages || e.End() > pages:
			return corruptf("artifact %q extent %d: pages %d..%d beyond image end (%d pages)", a.Name, i, e.Page, e.End(), pages)
		case e.Frame < 0 || int(e.Frame) >= len(frames):
			return corruptf("artifact %q extent %d: frame %d out of range (%d frames)", a.Name, i, e.Frame, len(frames))
		case e.Slot < 0 || int(e.Slot)+int(e.Count) > frames[e.Frame].Pages():
			return corruptf("artifact %q extent %d: slots %d..%d beyond frame %d (%d pages)", a.Name, i, e.Slot, int(e.Slot)+int(e.Count), e.Frame, frames[e.Frame].Pages())
		}
		next = e.End()
	}
	return nil
}

func checkManifest(m *Manifest) error {
	if m.Format != ManifestFormat {
		return corruptf("manifest format %q, want %q", m.Format, ManifestFormat)
	}
	seen := make(map[string]bool, len(m.Artifacts))
	for _, a := range m.Artifacts {
		if !ValidArtifactName(a.Name) {
			return corruptf("manifest: bad artifact name %q", a.Name)
		}
		if seen[a.Name] {
			return corruptf("manifest: artifact %q twice", a.Name)
		}
		seen[a.Name] = true
		if a.Size < 0 || a.Size > MaxImageSize {
			return corruptf("manifest: artifact %q size %d out of range", a.Name, a.Size)
		}
	}
	if m.State != "" && !seen[m.State] {
		return corruptf("manifest: state artifact %q not in the bundle", m.State)
	}
	return nil
}

// String names an extent for error messages.
func (e Extent) String() string {
	return fmt.Sprintf("pages %d..%d -> frame %d slots %d..%d", e.Page, e.End(), e.Frame, e.Slot, int(e.Slot)+int(e.Count))
}
