package fusefs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
)

// The test binary re-executes itself as the FUSE server ("serve" mode), so
// the test process only ever reads a mount another process serves.
const (
	envChild = "FUSEFS_TEST_CHILD"
	envSpec  = "FUSEFS_TEST_SPEC"
	envOpts  = "FUSEFS_TEST_OPTS"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "serve":
		os.Exit(serveChild(os.Args[len(os.Args)-1]))
	case "mapper":
		os.Exit(mapperChild(os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// serveChild mounts the fake bundle described in the environment at dir,
// prints "ready", and serves until SIGTERM/SIGINT or an unmount.
func serveChild(dir string) int {
	logger := log.New(os.Stderr, "serve: ", 0)
	var spec fakeSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &spec); err != nil {
		logger.Print(err)
		return 2
	}
	var opts Options
	if s := os.Getenv(envOpts); s != "" {
		if err := json.Unmarshal([]byte(s), &opts); err != nil {
			logger.Print(err)
			return 2
		}
	}
	opts.Logger = logger
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var b Bundle = newFakeBundle(spec)
	if spec.BundlePath != "" {
		cb, err := chunkstore.Open(spec.BundlePath, chunkstore.Options{CacheBytes: spec.CacheBytes})
		if err != nil {
			logger.Print(err)
			return 1
		}
		defer cb.Close()
		if b, err = FromChunkstore(cb); err != nil {
			logger.Print(err)
			return 1
		}
	}
	srv, err := Mount(dir, b, opts)
	if err != nil {
		logger.Print(err)
		return 1
	}
	if _, err := WriteRecord(Record{PID: os.Getpid(), MountPoint: srv.Dir(), Dev: srv.Info().Dev(), Started: time.Now()}); err != nil {
		logger.Print(err)
	}
	defer RemoveRecord(srv.Dir(), os.Getpid())
	fmt.Println("ready", srv.Info().Dev())
	select {
	case <-sigs:
		if err := srv.Close(); err != nil {
			logger.Print(err)
			return 1
		}
	case <-srv.Done():
	}
	return 0
}

// requireFUSE skips where no FUSE mount can be made at all.
func requireFUSE(t testing.TB) {
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

// testWatchdog bounds how long one test may use a server.
const testWatchdog = 2 * time.Minute

type served struct {
	dir string
	cmd *exec.Cmd
}

// serve starts a child serving spec and returns once it is mounted. The
// mount is removed in Cleanup even if the test fails or the child hangs.
func serve(t testing.TB, spec fakeSpec, opts *Options) *served {
	t.Helper()
	requireFUSE(t)
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	dir := t.TempDir()
	if spec.Real && spec.BundlePath == "" {
		spec.BundlePath = writeSpecBundle(t, spec)
	}
	specJSON, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), envChild+"=serve", envSpec+"="+string(specJSON))
	if opts != nil {
		o, _ := json.Marshal(opts)
		cmd.Env = append(cmd.Env, envOpts+"="+string(o))
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &served{dir: dir, cmd: cmd}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	// Watchdog: a test must fail, not hang, if the server wedges. Killing
	// it makes the kernel abort the connection: every blocked read returns.
	if _, isTest := t.(*testing.T); isTest {
		dog := time.AfterFunc(testWatchdog, func() {
			fmt.Fprintf(os.Stderr, "watchdog: killing server %d of %s after %v\n", cmd.Process.Pid, dir, testWatchdog)
			cmd.Process.Kill()
		})
		t.Cleanup(func() { dog.Stop() })
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := Unmount(ctx, dir); err != nil && !errors.Is(err, ErrNotMounted) {
			t.Errorf("cleanup: %v", err)
		}
		syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && !strings.HasPrefix(line, "ready") {
			err = fmt.Errorf("unexpected line %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("server child: %v", err)
		}
	case <-exited:
		t.Fatal("server child exited before mounting")
	case <-time.After(20 * time.Second):
		t.Fatal("server child not ready in 20s")
	}
	return s
}

// withTimeout runs f in a goroutine and fails the test if it takes longer
// than d (a hung FUSE read must fail the test, not hang it).
func withTimeout[T any](t testing.TB, d time.Duration, what string, f func() (T, error)) (T, error) {
	t.Helper()
	type res struct {
		v   T
		err error
	}
	c := make(chan res, 1)
	go func() { v, err := f(); c <- res{v, err} }()
	select {
	case r := <-c:
		return r.v, r.err
	case <-time.After(d):
		t.Fatalf("%s: no answer in %v", what, d)
		var zero T
		return zero, nil
	}
}

// readStats reads and decodes .stats of a mount (served by another process).
func readStats(t testing.TB, dir string) (FSStats, fakeStoreStats) {
	t.Helper()
	data, err := withTimeout(t, 10*time.Second, "read .stats", func() ([]byte, error) { return os.ReadFile(dir + "/" + StatsName) })
	if err != nil {
		t.Fatal(err)
	}
	fst, raw, err := ParseStats(data)
	if err != nil {
		t.Fatalf(".stats %q: %v", data, err)
	}
	var st fakeStoreStats
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatalf(".stats store %q: %v", raw, err)
	}
	return fst, st
}

// backends runs f against the fake bundle and a real one read through
// chunkstore.
func backends(t *testing.T, spec fakeSpec, f func(t *testing.T, spec fakeSpec)) {
	for _, real := range []bool{false, true} {
		name := "fake"
		if real {
			name = "chunkstore"
		}
		t.Run(name, func(t *testing.T) {
			s := spec
			s.Real = real
			if real {
				// A real bundle serves its config, not the spec's files.
				s.Files = nil
			}
			f(t, s)
		})
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
