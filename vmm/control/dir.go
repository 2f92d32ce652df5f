package control

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Names of the files in a state directory.
const (
	ControlSocketName = "control.sock"
	VsockSocketName   = "vsock.sock"
	PIDFileName       = "pid"
	lockName          = ".lock" // in the root: serialises create and clean
)

// probeTimeout bounds the control-socket liveness probe.
const probeTimeout = time.Second

// Sentinel errors, for errors.Is.
var (
	ErrBadName    = errors.New("control: invalid VM name")
	ErrNameInUse  = errors.New("control: VM name in use")
	ErrNotFound   = errors.New("control: no such VM")
	ErrNotRunning = errors.New("control: VM not running")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidName checks a VM name: 1-63 characters, letters, digits, '_', '.',
// '-', not starting with a punctuation character.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit", ErrBadName, name)
	}
	if reservedNames[name] {
		return fmt.Errorf("%w %q: reserved for the bundle daemons' files in the same run directory", ErrBadName, name)
	}
	return nil
}

// reservedNames are folders other parts of smolvm keep beside the VMs'
// state dirs (fusefs.RunDir's "mounts", the run-started daemons'
// "bundles"): never VM names, never listed or cleaned as VMs.
var reservedNames = map[string]bool{"bundles": true, "mounts": true}

// DefaultRoot is where state directories live: $SMOLVM_RUN_DIR if set,
// else $XDG_RUNTIME_DIR/smolvm, else /run/smolvm.
func DefaultRoot() string {
	if d := os.Getenv("SMOLVM_RUN_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "smolvm")
	}
	return "/run/smolvm"
}

// Dir is one VM's state directory.
type Dir struct {
	Name string
	Path string
}

// ControlSocket is the path of the VM's control socket.
func (d *Dir) ControlSocket() string { return filepath.Join(d.Path, ControlSocketName) }

// VsockSocket is the path of the VM's hybrid vsock socket.
func (d *Dir) VsockSocket() string { return filepath.Join(d.Path, VsockSocketName) }

// PIDFile is the path of the file naming the VM's process.
func (d *Dir) PIDFile() string { return filepath.Join(d.Path, PIDFileName) }

// Remove deletes the state directory (the VM's process calls it on exit).
func (d *Dir) Remove() error {
	if err := os.RemoveAll(d.Path); err != nil {
		return fmt.Errorf("control: remove state dir: %w", err)
	}
	return nil
}

// Liveness is what a state directory says about its VM.
type Liveness int

const (
	// Live: the VM's process exists and its control socket answers.
	Live Liveness = iota
	// Starting: the process exists but the socket does not answer (yet).
	Starting
	// Stale: the process is gone (or its pid was reused) and the socket
	// does not answer: the directory is left over from a dead VM.
	Stale
)

func (l Liveness) String() string {
	return [...]string{"live", "starting", "stale"}[l]
}

// Create makes the state directory for a new VM named name in root
// (0700, created if missing) and records the calling process in its pid
// file. A directory of a dead VM with that name is removed first; a live
// or starting one gives ErrNameInUse.
func Create(root, name string) (*Dir, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("control: state root: %w", err)
	}
	unlock, err := lockRoot(root)
	if err != nil {
		return nil, err
	}
	defer unlock()
	d := &Dir{Name: name, Path: filepath.Join(root, name)}
	if err := os.Mkdir(d.Path, 0o700); errors.Is(err, fs.ErrExist) {
		l, pid := d.liveness()
		if l != Stale {
			return nil, fmt.Errorf("%w: %q is %s (pid %d, state dir %s)", ErrNameInUse, name, l, pid, d.Path)
		}
		if err := d.Remove(); err != nil {
			return nil, err
		}
		err = os.Mkdir(d.Path, 0o700)
		if err != nil {
			return nil, fmt.Errorf("control: state dir: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("control: state dir: %w", err)
	}
	if err := writePIDFile(d.PIDFile(), os.Getpid()); err != nil {
		os.RemoveAll(d.Path)
		return nil, err
	}
	return d, nil
}

// Lookup finds the state directory of the VM named name. A missing one is
// ErrNotFound; a stale one is removed and reported as ErrNotRunning.
func Lookup(root, name string) (*Dir, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	d := &Dir{Name: name, Path: filepath.Join(root, name)}
	if _, err := os.Stat(d.Path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w named %q (no state dir %s)", ErrNotFound, name, d.Path)
	} else if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if l, pid := d.liveness(); l == Stale {
		cleaned := CleanStale(root, name) == nil
		msg := fmt.Sprintf("%q is not running (process %d is gone)", name, pid)
		if cleaned {
			msg += "; removed its stale state dir"
		}
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, msg)
	}
	return d, nil
}

// Entry is one state directory found by List.
type Entry struct {
	Dir
	PID      int
	Liveness Liveness
}

// List returns the state directories in root, sorted by name, with their
// liveness. It changes nothing (see CleanStale).
func List(root string) ([]Entry, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	var out []Entry
	for _, e := range ents {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		d := Dir{Name: e.Name(), Path: filepath.Join(root, e.Name())}
		if _, err := os.Lstat(d.PIDFile()); errors.Is(err, fs.ErrNotExist) {
			continue // Create writes the pid file under the root's lock: without one it is not a VM's dir
		}
		l, pid := d.liveness()
		out = append(out, Entry{Dir: d, PID: pid, Liveness: l})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CleanStale removes name's state directory if it is stale (checked again
// under the root's lock); ErrNameInUse if it is not.
func CleanStale(root, name string) error {
	unlock, err := lockRoot(root)
	if err != nil {
		return err
	}
	defer unlock()
	d := &Dir{Name: name, Path: filepath.Join(root, name)}
	if l, pid := d.liveness(); l != Stale {
		return fmt.Errorf("%w: %q is %s (pid %d)", ErrNameInUse, name, l, pid)
	}
	return d.Remove()
}

// liveness checks the pid file and probes the control socket.
func (d *Dir) liveness() (Liveness, int) {
	pid, start, err := readPIDFile(d.PIDFile())
	procAlive := err == nil && processStartTime(pid) == start && start != 0
	if socketAnswers(d.ControlSocket()) {
		return Live, pid
	}
	if procAlive {
		return Starting, pid
	}
	return Stale, pid
}

func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// The pid file holds "PID STARTTIME\n", STARTTIME being field 22 of
// /proc/PID/stat (clock ticks since boot), so that a reused pid is not
// mistaken for the VM.
func writePIDFile(path string, pid int) error {
	start := processStartTime(pid)
	if start == 0 {
		return fmt.Errorf("control: cannot read the start time of pid %d", pid)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o600); err != nil {
		return fmt.Errorf("control: pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("control: pid file: %w", err)
	}
	return nil
}

func readPIDFile(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("control: %s: want \"PID STARTTIME\", got %q", path, b)
	}
	if pid, err = strconv.Atoi(f[0]); err != nil || pid <= 0 {
		return 0, 0, fmt.Errorf("control: %s: bad pid %q", path, f[0])
	}
	if start, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("control: %s: bad start time %q", path, f[1])
	}
	return pid, start, nil
}

// processStartTime returns the start time of a live (non-zombie) process,
// 0 if there is none.
func processStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parens: skip to the
	// last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// lockRoot takes an exclusive flock on root/.lock, bounded to 10 s.
func lockRoot(root string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(root, lockName), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control: lock: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != unix.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("control: lock %s: %w", f.Name(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
