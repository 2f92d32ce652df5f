package snapshot

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

var (
	smolmountOnce sync.Once
	smolmountPath string
	smolmountErr  error
)

// buildSmolmount builds cmd/smolmount once per test binary.
func buildSmolmount(t *testing.T) string {
	t.Helper()
	smolmountOnce.Do(func() {
		dir, err := os.MkdirTemp("", "snapshot-smolmount-")
		if err != nil {
			smolmountErr = err
			return
		}
		smolmountPath = filepath.Join(dir, "smolmount")
		out, err := exec.Command("go", "build", "-o", smolmountPath, "../cmd/smolmount").CombinedOutput()
		if err != nil {
			smolmountErr = errors.New("building smolmount: " + err.Error() + "\n" + string(out))
		}
	})
	if smolmountErr != nil {
		t.Fatal(smolmountErr)
	}
	return smolmountPath
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if os.Geteuid() != 0 {
		t.Skip("smolmount mounts directly only as root")
	}
}

// packMemory packs a bundle holding a memory artifact of size bytes
// (random pages and zero pages) and returns its path, bytes and digest.
func packMemory(t *testing.T, size int64) (string, []byte, format.Digest) {
	t.Helper()
	dir := t.TempDir()
	mem := make([]byte, size)
	rng := rand.New(rand.NewPCG(uint64(size), 9))
	for p := int64(0); p < size/4096; p++ {
		if p%3 != 0 {
			for i := p * 4096; i < (p+1)*4096; i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					mem[i+int64(j)] = byte(v >> (8 * j))
				}
			}
		}
	}
	src := filepath.Join(dir, "memory.raw")
	if err := os.WriteFile(src, mem, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "m.smolmachine")
	_, err := chunkstore.Pack(context.Background(), path, chunkstore.PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1, MemoryBytes: size}},
		Inputs:   []chunkstore.PackInput{{Name: format.ArtifactMemory, Path: src}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := chunkstore.Open(path, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	return path, mem, b.Format().ManifestDigest()
}

func stopDaemonCleanup(t *testing.T, mnt string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := StopDaemon(ctx, mnt); err != nil && !strings.Contains(err.Error(), "not mounted") {
			t.Logf("stop daemon %s: %v", mnt, err)
		}
	})
}

// TestEnsureDaemon: the first call starts smolmount, later and concurrent
// calls share it, the mount serves the bundle's bytes, and a daemon killed
// with SIGKILL is replaced (its stale mount cleared).
func TestEnsureDaemon(t *testing.T) {
	requireFUSE(t)
	bin := buildSmolmount(t)
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	path, mem, digest := packMemory(t, 1<<20)
	ctx := context.Background()
	opt := DaemonOptions{Binary: bin}

	d, err := EnsureDaemon(ctx, path, digest, opt)
	if err != nil {
		t.Fatal(err)
	}
	stopDaemonCleanup(t, d.MountPoint)
	if !d.Started || d.PID <= 0 {
		t.Fatalf("first EnsureDaemon: %+v, want a started daemon", d)
	}
	got, err := os.ReadFile(filepath.Join(d.MountPoint, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Fatal("memory read through the daemon's mount differs from the packed image")
	}
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("pager socket: %v", err)
	}

	var wg sync.WaitGroup
	pids := make([]int, 4)
	errs := make([]error, 4)
	for i := range pids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dd, err := EnsureDaemon(ctx, path, digest, opt)
			if err == nil {
				pids[i] = dd.PID
				if dd.Started {
					err = errors.New("started a second daemon")
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i := range pids {
		if errs[i] != nil || pids[i] != d.PID {
			t.Fatalf("concurrent EnsureDaemon %d: pid %d err %v, want pid %d", i, pids[i], errs[i], d.PID)
		}
	}

	if err := syscall.Kill(d.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, d.PID)
	d2, err := EnsureDaemon(ctx, path, digest, opt)
	if err != nil {
		t.Fatalf("after SIGKILL: %v", err)
	}
	if !d2.Started || d2.PID == d.PID || d2.MountPoint != d.MountPoint {
		t.Fatalf("after SIGKILL: %+v, want a new daemon at %s", d2, d.MountPoint)
	}
	got, err = os.ReadFile(filepath.Join(d2.MountPoint, "memory"))
	if err != nil || !bytes.Equal(got, mem) {
		t.Fatalf("memory through the new daemon: equal=%v err=%v", bytes.Equal(got, mem), err)
	}
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		// The daemon is not our child (exec.Cmd in EnsureDaemon reaps it).
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d still alive", pid)
}

// TestEnsureDaemonFailures: a daemon that exits or never gets ready gives
// an error naming the bundle and quoting its log, within the bound.
func TestEnsureDaemonFailures(t *testing.T) {
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	digest := format.Digest{1, 2, 3}
	tests := []struct {
		name, bin, want string
	}{
		{"exits", script("exits", "echo 'cannot open bundle: corrupt' >&2; exit 1"), "exited before it was ready"},
		{"hangs", script("hangs", "echo starting; exec sleep 30"), "not ready within"},
		{"missing", filepath.Join(dir, "nonexistent"), "start"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := EnsureDaemon(context.Background(), filepath.Join(dir, tc.name+".smolmachine"), digest,
				DaemonOptions{Binary: tc.bin, ReadyTimeout: 500 * time.Millisecond})
			if err == nil || !errors.Is(err, ErrDaemon) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrDaemon with %q", err, tc.want)
			}
			if tc.name == "exits" && !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("error does not quote the daemon's log: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}
