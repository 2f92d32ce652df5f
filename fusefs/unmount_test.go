package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unmountBounded runs Unmount with a deadline and fails the test on error.
func unmountBounded(t *testing.T, dir string, d time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	if err := Unmount(ctx, dir); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if _, err := FindMount(dir); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("after Unmount: FindMount = %v, want ErrNotMounted", err)
	}
	return time.Since(start)
}

func waitChild(t *testing.T, s *served, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for processAlive(s.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatalf("server child %d still running %v after unmount", s.cmd.Process.Pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnmountLive: Unmount of a live daemon signals it; it unmounts itself,
// removes its record and exits.
func TestUnmountLive(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	rec, err := ReadRecord(s.dir)
	if err != nil || rec.PID != s.cmd.Process.Pid {
		t.Fatalf("record %+v, %v; want pid %d", rec, err, s.cmd.Process.Pid)
	}
	unmountBounded(t, s.dir, 10*time.Second)
	waitChild(t, s, 5*time.Second)
	if _, err := ReadRecord(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record left after unmount: %v", err)
	}
	if err := Unmount(context.Background(), s.dir); !errors.Is(err, ErrNotMounted) {
		t.Errorf("second Unmount: %v, want ErrNotMounted", err)
	}
}

// TestUnmountBusy: a file held open does not stop the unmount.
func TestUnmountBusy(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	f, err := os.Open(filepath.Join(s.dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unmountBounded(t, s.dir, 15*time.Second)
	waitChild(t, s, 10*time.Second)
	if _, err := f.ReadAt(make([]byte, 10), 3<<20); err == nil {
		t.Error("read through a file of an unmounted, ended daemon succeeded")
	}
}

// TestKill9: after kill -9 of the daemon a reader gets an error within
// seconds, and Unmount cleans the stale mount.
func TestKill9(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	f, err := os.Open(filepath.Join(s.dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = withTimeout(t, 5*time.Second, "read after kill -9", func() (int, error) {
		return f.ReadAt(make([]byte, 4096), 6<<20) // not yet in the page cache
	})
	if err == nil {
		t.Fatal("read after kill -9 succeeded")
	}
	t.Logf("read after kill -9: %v after %v", err, time.Since(start))
	if _, err := FindMount(s.dir); err != nil {
		t.Fatalf("stale mount should still be listed: %v", err)
	}
	t.Logf("unmount of the stale mount took %v", unmountBounded(t, s.dir, 10*time.Second))
}

// TestUnmountHungDaemon: a stopped daemon cannot answer; Unmount aborts the
// connection through fusectl and a blocked reader gets an error.
func TestUnmountHungDaemon(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	f, err := os.Open(filepath.Join(s.dir, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// SIGSTOP takes effect asynchronously: wait until every thread of the
	// daemon is stopped.
	deadline := time.Now().Add(5 * time.Second)
	for !allThreadsStopped(s.cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("daemon not stopped after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	readErr := make(chan error, 1)
	go func() { _, err := f.ReadAt(make([]byte, 4096), 1<<20); readErr <- err }()
	select {
	case err := <-readErr:
		t.Fatalf("read answered by a stopped daemon: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	ctlBefore := fusectlMounted(t)
	took := unmountBounded(t, s.dir, 15*time.Second)
	t.Logf("unmount of a stopped daemon took %v", took)
	if !ctlBefore && fusectlMounted(t) {
		t.Errorf("the abort left fusectl mounted at %s", fuseCtlDir)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("read blocked on a stopped daemon succeeded after abort")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read blocked on a stopped daemon still hangs after abort")
	}
}

// fusectlMounted says whether /proc/mounts lists fusectl at fuseCtlDir.
func fusectlMounted(t *testing.T) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == fuseCtlDir && f[2] == "fusectl" {
			return true
		}
	}
	return false
}

func allThreadsStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) || (stat[i+2] != 'T' && stat[i+2] != 't') {
			return false
		}
	}
	return true
}
