package pager

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"

	"github.com/smolvm/smolvm/fusefs"
)

// maxSocketPath is the longest unix socket path Linux takes (sun_path less
// its terminating NUL).
const maxSocketPath = 107

// SocketPath is where a daemon whose private run prefix is runBase (the
// smolmount record path without ".json") listens for VMMs. A prefix too
// long for a socket path is replaced by a hash of it, in the same
// directory.
func SocketPath(runBase string) string {
	p := runBase + ".uffd.sock"
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(runBase))
	return filepath.Join(filepath.Dir(runBase), "uffd-"+hex.EncodeToString(sum[:12])+".sock")
}

// DaemonSocket is the pager socket of the smolmount daemon serving
// mountpoint: what a VMM resuming from that mount passes to Dial.
func DaemonSocket(mountpoint string) (string, error) {
	rec, err := fusefs.RecordPath(mountpoint)
	if err != nil {
		return "", err
	}
	return SocketPath(strings.TrimSuffix(rec, ".json")), nil
}
