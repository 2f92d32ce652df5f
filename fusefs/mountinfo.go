package fusefs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	ID         int
	Major      uint32
	Minor      uint32
	Root       string
	MountPoint string
	FSType     string // "fuse.smolmount"
	Source     string // "smolmount"
}

// Dev is the mount's device as "major:minor".
func (m MountInfo) Dev() string { return fmt.Sprintf("%d:%d", m.Major, m.Minor) }

// IsFUSE reports whether the mount is a FUSE filesystem (fuse or fuse.NAME).
func (m MountInfo) IsFUSE() bool { return m.FSType == "fuse" || strings.HasPrefix(m.FSType, "fuse.") }

// ParseMountInfo parses the text of a /proc/PID/mountinfo file. A malformed
// line is an error naming its number.
func ParseMountInfo(data []byte) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		m, err := parseMountInfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("fusefs: mountinfo line %d %q: %w", lineNo, line, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fusefs: mountinfo: %w", err)
	}
	return out, nil
}

func parseMountInfoLine(line string) (MountInfo, error) {
	var m MountInfo
	f := strings.Fields(line)
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 {
		return m, fmt.Errorf("no \"-\" separator after the 6 leading fields (%d fields)", len(f))
	}
	if sep+3 > len(f) {
		return m, fmt.Errorf("missing filesystem type or source after \"-\"")
	}
	id, err := strconv.Atoi(f[0])
	if err != nil {
		return m, fmt.Errorf("mount id %q: %w", f[0], err)
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q: want major:minor", f[2])
	}
	ma, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device major %q: %w", maj, err)
	}
	mi, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return m, fmt.Errorf("device minor %q: %w", min, err)
	}
	m.ID, m.Major, m.Minor = id, uint32(ma), uint32(mi)
	if m.Root, err = unescapeMountField(f[3]); err != nil {
		return m, fmt.Errorf("root: %w", err)
	}
	if m.MountPoint, err = unescapeMountField(f[4]); err != nil {
		return m, fmt.Errorf("mount point: %w", err)
	}
	m.FSType = f[sep+1]
	if m.Source, err = unescapeMountField(f[sep+2]); err != nil {
		return m, fmt.Errorf("source: %w", err)
	}
	return m, nil
}

// unescapeMountField undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134).
func unescapeMountField(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%q: truncated escape at byte %d", s, i)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%q: bad escape %q at byte %d", s, s[i:i+4], i)
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}

// FindMount returns the last (topmost) mount whose mount point is dir, from
// /proc/self/mountinfo. dir is made absolute and its symlinks resolved
// without touching the mount itself (a stale FUSE mount cannot be stat'ed).
func FindMount(dir string) (MountInfo, error) {
	abs, err := canonicalMountPoint(dir)
	if err != nil {
		return MountInfo{}, err
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return MountInfo{}, fmt.Errorf("fusefs: %w", err)
	}
	mounts, err := ParseMountInfo(data)
	if err != nil {
		return MountInfo{}, err
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if mounts[i].MountPoint == abs {
			return mounts[i], nil
		}
	}
	return MountInfo{}, fmt.Errorf("fusefs: %s: %w", abs, ErrNotMounted)
}

// canonicalMountPoint makes dir absolute and resolves symlinks in its parent
// only: the last element may be a dead FUSE mount.
func canonicalMountPoint(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("fusefs: mount point %q: %w", dir, err)
	}
	parent, base := filepath.Split(abs)
	if base == "" {
		return abs, nil
	}
	rp, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return "", fmt.Errorf("fusefs: mount point %q: %w", dir, err)
	}
	return filepath.Join(rp, base), nil
}
