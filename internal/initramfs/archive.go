package initramfs

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"
)

// Sentinel errors, for errors.Is.
var (
	// ErrNotFound: a module, file or program the archive needs is missing.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a bad entry (path, mode) or a malformed input file.
	ErrInvalid = errors.New("invalid")
)

// Kind is the type of an archive entry.
type Kind int

// Entry kinds.
const (
	Dir Kind = iota
	File
	Symlink
	CharDevice
	BlockDevice
)

// Entry is one member of an Archive.
type Entry struct {
	Path         string // cleaned, relative, no leading slash
	Kind         Kind
	Mode         uint32 // permission bits (0o7777)
	Data         []byte // File content
	Target       string // Symlink target
	Major, Minor uint32 // device numbers
}

// Archive is an in-memory description of an initramfs. The zero value is an
// empty archive ready to use. Adding a path twice replaces the earlier entry.
type Archive struct {
	entries map[string]*Entry
}

func cleanPath(p string) (string, error) {
	c := strings.TrimPrefix(path.Clean("/"+p), "/")
	if c == "" || p == "" {
		return "", fmt.Errorf("initramfs: %w entry path %q", ErrInvalid, p)
	}
	return c, nil
}

func (a *Archive) add(e *Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("initramfs: %s: %w mode %#o (permission bits only)", p, ErrInvalid, e.Mode)
	}
	e.Path = p
	if a.entries == nil {
		a.entries = make(map[string]*Entry)
	}
	a.entries[p] = e
	return nil
}

// AddDir adds a directory.
func (a *Archive) AddDir(p string, mode uint32) error {
	return a.add(&Entry{Path: p, Kind: Dir, Mode: mode})
}

// AddFile adds a regular file with the given content.
func (a *Archive) AddFile(p string, mode uint32, data []byte) error {
	return a.add(&Entry{Path: p, Kind: File, Mode: mode, Data: data})
}

// AddHostFile adds a regular file read now from hostPath. When mode is 0 the
// host file's permission bits are used.
func (a *Archive) AddHostFile(p, hostPath string, mode uint32) error {
	fi, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s: %w: host file %s is not a regular file", p, ErrInvalid, hostPath)
	}
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", p, err)
	}
	if mode == 0 {
		mode = uint32(fi.Mode().Perm())
	}
	return a.AddFile(p, mode, data)
}

// AddSymlink adds a symbolic link to target.
func (a *Archive) AddSymlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("initramfs: %s: %w: empty symlink target", p, ErrInvalid)
	}
	return a.add(&Entry{Path: p, Kind: Symlink, Mode: 0o777, Target: target})
}

// AddDevice adds a character (char true) or block device node.
func (a *Archive) AddDevice(p string, mode uint32, char bool, major, minor uint32) error {
	k := BlockDevice
	if char {
		k = CharDevice
	}
	return a.add(&Entry{Path: p, Kind: k, Mode: mode, Major: major, Minor: minor})
}

// Entries returns the entries in write order: sorted by path, with missing
// parent directories added (mode 0755).
func (a *Archive) Entries() []*Entry {
	all := make(map[string]*Entry, len(a.entries))
	for p, e := range a.entries {
		all[p] = e
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := a.entries[d]; !ok {
				all[d] = &Entry{Path: d, Kind: Dir, Mode: 0o755}
			}
		}
	}
	out := make([]*Entry, 0, len(all))
	for _, e := range all {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Digest is a SHA-256 over everything that determines the written archive,
// as lowercase hex: a cache key.
func (a *Archive) Digest() string {
	h := sha256.New()
	for _, e := range a.Entries() {
		writeField(h, []byte(e.Path))
		var n [4 * 4]byte
		binary.LittleEndian.PutUint32(n[0:], uint32(e.Kind))
		binary.LittleEndian.PutUint32(n[4:], e.Mode)
		binary.LittleEndian.PutUint32(n[8:], e.Major)
		binary.LittleEndian.PutUint32(n[12:], e.Minor)
		h.Write(n[:])
		writeField(h, []byte(e.Target))
		writeField(h, e.Data)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func writeField(h hash.Hash, b []byte) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

// WriteCpio writes the archive as an uncompressed newc cpio stream.
func (a *Archive) WriteCpio(w io.Writer) error {
	cw := cpio.NewWriter(w)
	for i, e := range a.Entries() {
		hdr := &cpio.Header{Name: e.Path, Mode: cpio.FileMode(e.Mode), Inode: int64(i + 1), Links: 1}
		var data []byte
		switch e.Kind {
		case Dir:
			hdr.Mode |= cpio.TypeDir
			hdr.Links = 2
		case File:
			hdr.Mode |= cpio.TypeReg
			data = e.Data
		case Symlink:
			hdr.Mode |= cpio.TypeSymlink
			data = []byte(e.Target)
		case CharDevice, BlockDevice:
			// The cpio library has no rdev fields: write this header
			// ourselves, between fully flushed library entries.
			if err := cw.Flush(); err != nil {
				return fmt.Errorf("initramfs: %s: %w", e.Path, err)
			}
			if err := writeDeviceHeader(w, e, int64(i+1)); err != nil {
				return fmt.Errorf("initramfs: %s: %w", e.Path, err)
			}
			continue
		}
		if int64(len(data)) > 0xFFFFFFFF {
			return fmt.Errorf("initramfs: %s: %w: %d bytes is more than newc can store", e.Path, ErrInvalid, len(data))
		}
		hdr.Size = int64(len(data))
		if err := cw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("initramfs: %s: %w", e.Path, err)
		}
		if _, err := cw.Write(data); err != nil {
			return fmt.Errorf("initramfs: %s: %w", e.Path, err)
		}
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	return nil
}

// writeDeviceHeader writes a newc header (magic 070701, thirteen 8-digit hex
// fields, the NUL-terminated name padded to 4 bytes) for a device node,
// which has no data.
func writeDeviceHeader(w io.Writer, e *Entry, inode int64) error {
	typ := uint32(cpio.TypeBlock)
	if e.Kind == CharDevice {
		typ = cpio.TypeChar
	}
	fields := []uint32{
		uint32(inode), typ | e.Mode, 0, 0, 1, 0, 0, // ino mode uid gid nlink mtime filesize
		0, 0, e.Major, e.Minor, // devmajor devminor rdevmajor rdevminor
		uint32(len(e.Path) + 1), 0, // namesize check
	}
	var b strings.Builder
	b.WriteString("070701")
	for _, f := range fields {
		fmt.Fprintf(&b, "%08X", f)
	}
	b.WriteString(e.Path)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
