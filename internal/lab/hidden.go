package lab

import (
	"path/filepath"
	"strings"
)

// labOwnMounts are the paths lab_init.sh mounts fresh filesystems over in the
// lab's root: a host directory below one of them is not visible through the
// 9p host root.
var labOwnMounts = []string{"/tmp", "/run", "/dev", "/proc", "/sys"}

// under reports whether path p is dir or lies below it (both clean, absolute).
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// hiddenInLab reports whether host path p (absolute) is hidden inside the lab
// by one of its own mounts and by none of the shares, which are mounted last.
func hiddenInLab(p string, shares []string) bool {
	p = filepath.Clean(p)
	for _, s := range shares {
		if under(p, filepath.Clean(s)) {
			return false
		}
	}
	for _, m := range labOwnMounts {
		if under(p, m) {
			return true
		}
	}
	return false
}
