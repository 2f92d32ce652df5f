package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/internal/syncbuf"
	"golang.org/x/sys/unix"
)

var smolmountBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "smolmount-test-")
	if err != nil {
		panic(err)
	}
	smolmountBin = filepath.Join(dir, "smolmount")
	out, err := exec.Command("go", "build", "-o", smolmountBin, ".").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		panic("building smolmount: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			t.Skip("not root and no fusermount3 (package fuse3)")
		}
	}
}

// testBundle packs source files (what `smolvm extract` gives back) into a
// bundle and returns the bundle path and the sources by artifact name.
func testBundle(t *testing.T, memSize int64) (string, map[string]string) {
	t.Helper()
	return testBundleWS(t, memSize, nil)
}

// testBundleWS is testBundle with a recorded working set.
func testBundleWS(t *testing.T, memSize int64, ws []format.PageRange) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(memSize), 3))
	sources := map[string]string{}
	write := func(name string, size int64, zeroEvery int) {
		data := make([]byte, size)
		for p := int64(0); p*4096 < size; p++ {
			if zeroEvery > 0 && p%int64(zeroEvery) < int64(zeroEvery)/3 {
				continue
			}
			chunk := data[p*4096 : min(size, (p+1)*4096)]
			for i := range chunk {
				chunk[i] = byte(rng.Uint32() >> 24)
			}
		}
		path := filepath.Join(dir, strings.ReplaceAll(name, "/", "_"))
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sources[name] = path
	}
	write("memory", memSize, 9)
	write("kernel", 3<<20+123, 0)
	write("disk/root", 4<<20, 5)
	var inputs []chunkstore.PackInput
	for name, p := range sources {
		inputs = append(inputs, chunkstore.PackInput{Name: name, Path: p})
	}
	bundle := filepath.Join(dir, "test.smolmachine")
	_, err := chunkstore.Pack(context.Background(), bundle, chunkstore.PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "amd64", VCPUs: 2, MemoryBytes: memSize}, WorkingSet: ws},
		Inputs:   inputs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return bundle, sources
}

type daemon struct {
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *syncbuf.Buffer
}

// startDaemon runs smolmount BUNDLE DIR as a child and waits for its ready
// line; Cleanup always removes the mount (smolmount -u) and reaps the child.
func startDaemon(t *testing.T, bundle string, args ...string) *daemon {
	t.Helper()
	requireFUSE(t)
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	d := &daemon{dir: t.TempDir(), exited: make(chan struct{}), stderr: &syncbuf.Buffer{}}
	d.cmd = exec.Command(smolmountBin, append([]string{bundle, d.dir}, args...)...)
	d.cmd.Stderr = d.stderr
	out, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Watchdog: a wedged daemon must fail the test, not hang it; killing
	// it makes the kernel abort the connection, so blocked reads return.
	dog := time.AfterFunc(2*time.Minute, func() { d.cmd.Process.Kill() })
	t.Cleanup(func() { dog.Stop() })
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		if _, err := fusefs.FindMount(d.dir); err == nil {
			if out, err := exec.Command(smolmountBin, "-u", d.dir).CombinedOutput(); err != nil {
				t.Errorf("cleanup: smolmount -u: %v: %s", err, out)
			}
		}
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGCONT)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "smolmount: ready") {
			t.Fatalf("smolmount: first line %q; stderr: %s", line, d.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("smolmount not ready in 30s; stderr: %s", d.stderr)
	}
	return d
}

func (d *daemon) waitExit(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		t.Fatalf("smolmount still running after %v; stderr: %s", limit, d.stderr)
		return -1
	}
}

func TestServeMatchesSource(t *testing.T) {
	bundle, sources := testBundle(t, 48<<20+4096*3+5)
	d := startDaemon(t, bundle)
	for name, src := range sources {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(d.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: mount differs from source (%d vs %d bytes)", name, len(got), len(want))
		}
	}
	// MAP_PRIVATE, as the VMM maps guest memory.
	want, _ := os.ReadFile(sources["memory"])
	f, err := os.Open(filepath.Join(d.dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, len(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if !bytes.Equal(mem, want) {
		t.Error("MAP_PRIVATE mapping differs from source")
	}
	cfg, err := os.ReadFile(filepath.Join(d.dir, "config.json"))
	if err != nil || !bytes.Contains(cfg, []byte(`"vcpus": 2`)) {
		t.Errorf("config.json: %s, %v", cfg, err)
	}
	m, err := fusefs.FindMount(d.dir)
	if err != nil || m.FSType != "fuse.smolmount" || m.Source != "smolmount" {
		t.Errorf("mount entry %+v, %v; want smolmount type fuse.smolmount", m, err)
	}
}

func TestUnmountFlag(t *testing.T) {
	bundle, _ := testBundle(t, 8<<20)
	d := startDaemon(t, bundle)
	rec, err := fusefs.ReadRecord(d.dir)
	if err != nil || rec.PID != d.cmd.Process.Pid {
		t.Fatalf("record %+v, %v; want pid %d", rec, err, d.cmd.Process.Pid)
	}
	if out, err := exec.Command(smolmountBin, "-u", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("smolmount -u: %v: %s", err, out)
	}
	if _, err := fusefs.FindMount(d.dir); !errors.Is(err, fusefs.ErrNotMounted) {
		t.Errorf("after -u: %v, want not mounted", err)
	}
	if code := d.waitExit(t, 5*time.Second); code != 0 {
		t.Errorf("daemon exit %d after -u; stderr: %s", code, d.stderr)
	}
	if _, err := fusefs.ReadRecord(d.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("record left behind: %v", err)
	}
	out, err := exec.Command(smolmountBin, "-u", d.dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "nothing is mounted") {
		t.Errorf("second -u: %v: %s; want a 'nothing is mounted' error", err, out)
	}
}

func TestSignals(t *testing.T) {
	bundle, _ := testBundle(t, 8<<20)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			d := startDaemon(t, bundle)
			d.cmd.Process.Signal(sig)
			if code := d.waitExit(t, 10*time.Second); code != 0 {
				t.Errorf("exit %d after %v; stderr: %s", code, sig, d.stderr)
			}
			if _, err := fusefs.FindMount(d.dir); !errors.Is(err, fusefs.ErrNotMounted) {
				t.Errorf("after %v: %v, want not mounted", sig, err)
			}
		})
	}
}

func TestKill9ThenUnmount(t *testing.T) {
	bundle, _ := testBundle(t, 16<<20)
	d := startDaemon(t, bundle)
	f, err := os.Open(filepath.Join(d.dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.cmd.Process.Kill()
	d.waitExit(t, 5*time.Second)
	errc := make(chan error, 1)
	go func() { _, err := f.ReadAt(make([]byte, 4096), 8<<20); errc <- err }()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("read after kill -9 succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read after kill -9 still blocked after 5s")
	}
	start := time.Now()
	if out, err := exec.Command(smolmountBin, "-u", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("smolmount -u of a stale mount: %v: %s", err, out)
	}
	t.Logf("-u of a stale mount took %v", time.Since(start))
	if _, err := fusefs.FindMount(d.dir); !errors.Is(err, fusefs.ErrNotMounted) {
		t.Errorf("stale mount left: %v", err)
	}
}

func TestBadArguments(t *testing.T) {
	requireFUSE(t)
	bundle, _ := testBundle(t, 1<<20)
	garbage := filepath.Join(t.TempDir(), "garbage.smolmachine")
	os.WriteFile(garbage, bytes.Repeat([]byte("x"), 10000), 0o644)
	mnt := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no args", nil, "want BUNDLE MOUNTPOINT"},
		{"missing bundle", []string{"/nonexistent.smolmachine", mnt}, "no such file"},
		{"not a bundle", []string{garbage, mnt}, garbage},
		{"missing mountpoint", []string{bundle, "/nonexistent/dir"}, "/nonexistent/dir"},
		{"bad cache size", []string{bundle, mnt, "--cache-size", "12Q"}, "--cache-size"},
		{"-u two args", []string{"-u", mnt, mnt}, "exactly one"},
		{"-u not mounted", []string{"-u", mnt}, "nothing is mounted"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, smolmountBin, c.args...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.want) {
				t.Errorf("smolmount %q: %v: %s; want a failure mentioning %q", c.args, err, out, c.want)
			}
			if _, err := fusefs.FindMount(mnt); err == nil {
				t.Errorf("a mount was left at %s", mnt)
				exec.Command(smolmountBin, "-u", mnt).Run()
			}
		})
	}
}

// TestShutdownBusyAndExternalUnmount: SIGTERM while a file is open still
// ends the daemon and the mount (the holder gets errors); a plain umount
// from outside ends the daemon too.
func TestShutdownBusyAndExternalUnmount(t *testing.T) {
	bundle, _ := testBundle(t, 8<<20)
	t.Run("busy", func(t *testing.T) {
		d := startDaemon(t, bundle)
		f, err := os.Open(filepath.Join(d.dir, "memory"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.waitExit(t, 20*time.Second)
		if _, err := fusefs.FindMount(d.dir); !errors.Is(err, fusefs.ErrNotMounted) {
			t.Errorf("busy mount left after SIGTERM: %v", err)
		}
		if _, err := f.ReadAt(make([]byte, 4096), 4<<20); err == nil {
			t.Error("read through a file of an ended daemon succeeded")
		}
	})
	t.Run("umount", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root for umount2")
		}
		d := startDaemon(t, bundle)
		if err := unix.Unmount(d.dir, 0); err != nil {
			t.Fatal(err)
		}
		if code := d.waitExit(t, 10*time.Second); code != 0 {
			t.Errorf("exit %d after an external umount; stderr: %s", code, d.stderr)
		}
	})
}
