package control

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// liveChild starts a process that lives until the test ends.
func liveChild(t *testing.T) int {
	t.Helper()
	c := exec.Command("sleep", "600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c.Process.Pid
}

// fakeDir makes a state dir as another process would have left it.
func fakeDir(t *testing.T, root, name, pidFile string, listen bool) *Dir {
	t.Helper()
	d := &Dir{Name: name, Path: filepath.Join(root, name)}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		t.Fatal(err)
	}
	if pidFile != "" {
		if err := os.WriteFile(d.PIDFile(), []byte(pidFile), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if listen {
		ln, err := net.Listen("unix", d.ControlSocket())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	} else if err := os.WriteFile(d.ControlSocket(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"vm1", true}, {"a", true}, {"web-1.test_2", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {".hidden", false}, {"-x", false},
		{"a/b", false}, {"..", false}, {"a b", false}, {"ä", false}, {"bundles", false}, {"mounts", false},
	} {
		if err := ValidName(c.name); (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrBadName)) {
			t.Errorf("ValidName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

func TestCreate(t *testing.T) {
	root := filepath.Join(t.TempDir(), "run")
	d, err := Create(root, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.Path); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir %s: %v %v", d.Path, fi.Mode(), err)
	}
	pid, start, err := readPIDFile(d.PIDFile())
	if err != nil || pid != os.Getpid() || start != processStartTime(os.Getpid()) {
		t.Fatalf("pid file: %d %d %v", pid, start, err)
	}
	// Our own process is alive: the name is taken while it starts.
	if _, err := Create(root, "vm1"); !errors.Is(err, ErrNameInUse) || !strings.Contains(err.Error(), "starting") {
		t.Errorf("second Create: %v, want ErrNameInUse (starting)", err)
	}
	if _, err := Create(root, "bad/name"); !errors.Is(err, ErrBadName) {
		t.Errorf("bad name: %v", err)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(root, "vm1"); err != nil {
		t.Errorf("Create after Remove: %v", err)
	}
}

func TestLiveness(t *testing.T) {
	root := t.TempDir()
	live := liveChild(t)
	dead := deadPID(t)
	for _, c := range []struct {
		name    string
		pidFile string
		listen  bool
		want    Liveness
	}{
		{"live", fmt.Sprintf("%d %d\n", live, processStartTime(live)), true, Live},
		{"starting", fmt.Sprintf("%d %d\n", live, processStartTime(live)), false, Starting},
		{"dead pid", fmt.Sprintf("%d 12345\n", dead), false, Stale},
		{"reused pid", fmt.Sprintf("%d %d\n", live, processStartTime(live)+1), false, Stale},
		{"no pid file", "", false, Stale},
		{"garbage pid file", "hello\n", false, Stale},
		{"dead pid but socket answers", fmt.Sprintf("%d 1\n", dead), true, Live},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := strings.ReplaceAll(c.name, " ", "-")
			d := fakeDir(t, root, name, c.pidFile, c.listen)
			if got, _ := d.liveness(); got != c.want {
				t.Errorf("liveness %v, want %v", got, c.want)
			}
			_, err := Create(root, name)
			if c.want == Stale {
				if err != nil {
					t.Errorf("Create over a stale dir: %v", err)
				}
			} else if !errors.Is(err, ErrNameInUse) {
				t.Errorf("Create over a %v dir: %v, want ErrNameInUse", c.want, err)
			}
		})
	}
}

func TestLookupAndList(t *testing.T) {
	root := t.TempDir()
	live := liveChild(t)
	fakeDir(t, root, "alive", fmt.Sprintf("%d %d\n", live, processStartTime(live)), true)
	fakeDir(t, root, "dead", fmt.Sprintf("%d 1\n", deadPID(t)), false)
	os.WriteFile(filepath.Join(root, "not-a-dir"), nil, 0o600)

	ents, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, fmt.Sprintf("%s:%v", e.Name, e.Liveness))
	}
	if strings.Join(got, " ") != "alive:live dead:stale" {
		t.Errorf("List: %v", got)
	}
	if d, err := Lookup(root, "alive"); err != nil || d.ControlSocket() != filepath.Join(root, "alive", "control.sock") {
		t.Errorf("Lookup alive: %v %v", d, err)
	}
	if _, err := Lookup(root, "dead"); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "removed its stale state dir") {
		t.Errorf("Lookup dead: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "dead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale dir still there: %v", err)
	}
	if _, err := Lookup(root, "never"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "never") {
		t.Errorf("Lookup never: %v", err)
	}
	if err := CleanStale(root, "alive"); !errors.Is(err, ErrNameInUse) {
		t.Errorf("CleanStale of a live VM: %v", err)
	}
	if ents, err := List(filepath.Join(root, "missing")); err != nil || len(ents) != 0 {
		t.Errorf("List of a missing root: %v %v", ents, err)
	}
}

// TestCreateRace: of 8 concurrent creators of one name exactly one wins.
func TestCreateRace(t *testing.T) {
	root := t.TempDir()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, inUse := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Create(root, "same")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrNameInUse):
				inUse++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || inUse != 7 {
		t.Errorf("%d wins, %d in use; want 1 and 7", wins, inUse)
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv("SMOLVM_RUN_DIR", "")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	if r := DefaultRoot(); r != "/run/user/1000/smolvm" {
		t.Errorf("with XDG_RUNTIME_DIR: %s", r)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if r := DefaultRoot(); r != "/run/smolvm" {
		t.Errorf("without: %s", r)
	}
	t.Setenv("SMOLVM_RUN_DIR", "/tmp/x")
	if r := DefaultRoot(); r != "/tmp/x" {
		t.Errorf("SMOLVM_RUN_DIR: %s", r)
	}
}

// TestListSkipsDaemonFolders: the bundle daemons keep "bundles" and "mounts"
// (and their logs and locks) in the same run root; List must neither report
// them as VMs nor leave them for CleanStale, or `smolvm ps` deletes a live
// daemon's files.
func TestListSkipsDaemonFolders(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{"bundles", "mounts", "not-a-vm"} {
		p := filepath.Join(root, dir)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "x.log"), []byte("daemon log"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, err := Create(root, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Remove() })
	ents, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name != "vm1" {
		t.Fatalf("List = %+v, want only vm1", ents)
	}
	for _, dir := range []string{"bundles", "mounts", "not-a-vm"} {
		if _, err := os.Stat(filepath.Join(root, dir, "x.log")); err != nil {
			t.Errorf("%s/x.log: %v", dir, err)
		}
	}
}
