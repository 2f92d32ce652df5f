package format

// Fixed numbers of format v1; docs/FORMAT.md is the specification.
const (
	// Magic opens every bundle (header bytes 0..7).
	Magic = "SMOLMACH"
	// TrailerMagic closes every bundle (the file's last 8 bytes).
	TrailerMagic = "SMOLTAIL"
	// TOCMagic opens the table of contents.
	TOCMagic = "SMOLTOC1"

	// VersionMajor is the format major version this package writes and the
	// newest it reads; VersionMinor the minor version it writes (a reader
	// accepts any minor of a known major).
	VersionMajor = 1
	VersionMinor = 0

	// HeaderSize and TrailerSize are fixed.
	HeaderSize  = 16
	TrailerSize = 128

	// MaxFramePages bounds the pages in one frame (4 MiB decompressed).
	MaxFramePages = 1024
	// DefaultFramePages is the frame size pack uses unless told otherwise
	// (chosen by measurement, docs/FORMAT.md "Frame size").
	DefaultFramePages = 32
	// MaxImageSize bounds an artifact's size (1 PiB) so page arithmetic
	// cannot overflow.
	MaxImageSize = 1 << 50
	// MaxManifestSize bounds the JSON manifest.
	MaxManifestSize = 64 << 20

	// frameRecordFixed is the size of a TOC frame record before its page
	// digests; extentRecordSize the size of one extent record.
	frameRecordFixed = 32 + 8 + 4 + 2 + 2
	extentRecordSize = 8 + 4 + 4 + 4
)

// Frame flags in the TOC.
const (
	// FlagExternal marks a frame whose bytes are not in the bundle but in a
	// chunk store (a thin bundle); its Offset is 0.
	FlagExternal = 1 << 0
)
