package format

// PageSize is the unit of identity and deduplication: a 4 KiB guest page.
// Images are addressed in pages; an image's last page may be partial.
const PageSize = 4096

// Extent maps a run of consecutive image pages to consecutive slots of one
// frame: image page Page+i is stored in slot Slot+i of frame Frame, for
// i < Count. Frame indexes the bundle's frame table.
type Extent struct {
	Page  int64 `json:"page"`
	Count int32 `json:"count"`
	Frame int32 `json:"frame"`
	Slot  int32 `json:"slot"`
}

// End is the first image page after the extent.
func (e Extent) End() int64 { return e.Page + int64(e.Count) }
