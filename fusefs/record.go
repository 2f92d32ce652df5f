package fusefs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Record describes a running smolmount daemon. The daemon writes it next to
// nothing user-visible, in RunDir, named after its mount point; `smolmount
// -u` reads it to end the daemon by signal and other components find the
// daemon (and its sockets) through it.
type Record struct {
	PID        int       `json:"pid"`
	MountPoint string    `json:"mountpoint"`
	Bundle     string    `json:"bundle"`
	Dev        string    `json:"dev"` // "major:minor" of the mount, guards against pid reuse
	Started    time.Time `json:"started"`
}

// RunDir is where daemon records live: /run/smolvm/mounts as root,
// otherwise $XDG_RUNTIME_DIR/smolvm/mounts, or /tmp/smolvm-UID/mounts.
// SMOLVM_RUN_DIR overrides it (tests).
func RunDir() string {
	if d := os.Getenv("SMOLVM_RUN_DIR"); d != "" {
		return filepath.Join(d, "mounts")
	}
	if os.Geteuid() == 0 {
		return "/run/smolvm/mounts"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "smolvm", "mounts")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("smolvm-%d", os.Geteuid()), "mounts")
}

// RecordPath is the record file of the daemon serving mountpoint:
// RunDir()/<escaped absolute mount point>.json, "/" written as "%2F".
func RecordPath(mountpoint string) (string, error) {
	abs, err := canonicalMountPoint(mountpoint)
	if err != nil {
		return "", err
	}
	esc := strings.NewReplacer("%", "%25", "/", "%2F").Replace(abs)
	return filepath.Join(RunDir(), esc+".json"), nil
}

// WriteRecord writes r atomically (temp file, then rename) and returns its path.
func WriteRecord(r Record) (string, error) {
	p, err := RecordPath(r.MountPoint)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("fusefs: record: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("fusefs: record: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".record-*")
	if err != nil {
		return "", fmt.Errorf("fusefs: record: %w", err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("fusefs: record %s: %w", p, werr)
	}
	return p, nil
}

// ReadRecord reads the record of the daemon serving mountpoint.
func ReadRecord(mountpoint string) (Record, error) {
	var r Record
	p, err := RecordPath(mountpoint)
	if err != nil {
		return r, err
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return r, fmt.Errorf("fusefs: record: %w", err)
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("fusefs: record %s: %w", p, err)
	}
	if r.PID <= 0 {
		return r, fmt.Errorf("fusefs: record %s: bad pid %d", p, r.PID)
	}
	return r, nil
}

// RemoveRecord deletes the record of mountpoint if it names pid (or
// whatever it names when pid is 0). A missing record is not an error.
func RemoveRecord(mountpoint string, pid int) error {
	if pid != 0 {
		if r, err := ReadRecord(mountpoint); err != nil || r.PID != pid {
			return nil
		}
	}
	p, err := RecordPath(mountpoint)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("fusefs: record: %w", err)
	}
	return nil
}
