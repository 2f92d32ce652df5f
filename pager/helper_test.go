package pager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// The faulting side of every test runs in a child process: the test binary
// re-executed with helperEnv naming a file holding a JSON helperConfig. A Go process must
// not fault on memory whose faults it serves.
const helperEnv = "SMOLVM_PAGER_HELPER"

// Child exit codes.
const (
	exitOK       = 0
	exitPagerErr = 3 // Client.Err fired: the VM would be stopped
	exitMismatch = 4 // wrong bytes: the one outcome that must never happen
	exitSetup    = 5
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

type helperConfig struct {
	Mode   string           `json:"mode"` // "client" or "server"
	Socket string           `json:"socket"`
	Image  fakeimage.Config `json:"image"`
	Out    string           `json:"out"`

	// client
	Split        bool        `json:"split"`   // guest memory in two mappings/regions
	Pattern      string      `json:"pattern"` // seq, random, same, list
	List         []int64     `json:"list"`
	Threads      int         `json:"threads"`
	Method       string      `json:"method"` // direct (Go loads) or syscall (kernel-mode faults, like KVM_RUN)
	Record       bool        `json:"record"`
	Prefetch     *WorkingSet `json:"prefetch"`
	WaitPrefetch bool        `json:"wait_prefetch"`

	// Source, when set, is a file holding the expected image bytes
	// (a real bundle's input) instead of the fake generator's.
	Source string `json:"source"`
	// MapPath, in mode "mmap", is the file to map (a memory file on a
	// FUSE mount) instead of registering a userfaultfd.
	MapPath string `json:"map_path"`
	// TimeTouches measures each page access (benchmarks).
	TimeTouches bool `json:"time_touches"`
	// NoCheck reads one byte per page (a guest touching it) and checks
	// nothing (benchmarks).
	NoCheck  bool        `json:"no_check"`
	Populate *WorkingSet `json:"populate"`

	// DropPages: after touching, MADV_DONTNEED the first DropPages pages
	// and read them again: they must read as zeros (anonymous memory
	// semantics), served without a hang.
	DropPages int64 `json:"drop_pages"`

	// HeartbeatMs > 0 starts Client.Heartbeat(HeartbeatMs, 5*HeartbeatMs).
	HeartbeatMs int `json:"heartbeat_ms"`

	// UffdFirstOnly registers only the first region on the userfaultfd
	// while telling the daemon about all (a VMM bug the daemon must report).
	UffdFirstOnly bool `json:"uffd_first_only"`

	// server
	DelayMs int `json:"delay_ms"`
}

// expected gives a page's expected bytes.
type expected interface{ FillPage(p int64, dst []byte) }

type fileExpected struct{ f *os.File }

func (e fileExpected) FillPage(p int64, dst []byte) {
	clear(dst)
	e.f.ReadAt(dst, p*PageSize)
}

func expectedFor(cfg *helperConfig) (expected, error) {
	if cfg.Source == "" {
		return fakeimage.New(cfg.Image), nil
	}
	f, err := os.Open(cfg.Source)
	return fileExpected{f}, err
}

type helperResult struct {
	Stats      Stats       `json:"stats"`
	WorkingSet *WorkingSet `json:"working_set"`
	Touched    int64       `json:"touched"`
	TouchNs    int64       `json:"touch_ns"` // touching, after any prefetch wait
	TotalNs    int64       `json:"total_ns"` // from register to the last touch
	// Per-access latency seen by the faulting thread (TimeTouches).
	TouchP50 time.Duration `json:"touch_p50_ns"`
	TouchP99 time.Duration `json:"touch_p99_ns"`
}

func runHelper(path string) int {
	var cfg helperConfig
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return exitSetup
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "helper config:", err)
		return exitSetup
	}
	switch cfg.Mode {
	case "client":
		return runClientHelper(&cfg)
	case "server":
		return runServerHelper(&cfg)
	case "mmap":
		return runMmapHelper(&cfg)
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", cfg.Mode)
	return exitSetup
}

// runServerHelper serves a fake image on cfg.Socket until killed.
func runServerHelper(cfg *helperConfig) int {
	im := fakeimage.New(cfg.Image)
	im.SetDelay(time.Duration(cfg.DelayMs) * time.Millisecond)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitSetup
	}
	fmt.Println("READY")
	srv := &Server{Open: openOnly(im)}
	if err := srv.Serve(context.Background(), ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return exitSetup
	}
	return exitOK
}

func openOnly(imgs ...chunkstore.Image) func(string) (chunkstore.Image, error) {
	return func(name string) (chunkstore.Image, error) {
		for _, im := range imgs {
			if im.Name() == name {
				return im, nil
			}
		}
		return nil, fmt.Errorf("no artifact %q", name)
	}
}

func fail(code int, format string, args ...any) int {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	return code
}

// guestMemory is the child's anonymous "guest RAM": one or two mappings.
type guestMemory struct {
	mems    [][]byte
	regions []Region
	split   int64 // first image page of the second mapping
}

func newGuestMemory(artifact string, pages int64, split bool) (*guestMemory, error) {
	g := &guestMemory{split: pages}
	parts := [][2]int64{{0, pages}}
	if split {
		g.split = pages / 2
		parts = [][2]int64{{0, pages / 2}, {pages / 2, pages}}
	}
	for _, p := range parts {
		mem, err := unix.Mmap(-1, 0, int((p[1]-p[0])*PageSize), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return nil, err
		}
		g.mems = append(g.mems, mem)
		g.regions = append(g.regions, Region{HostAddr: HostAddr(mem), Length: uint64(len(mem)), Artifact: artifact, Offset: p[0] * PageSize})
	}
	return g, nil
}

func (g *guestMemory) page(p int64) []byte {
	if p >= g.split {
		return g.mems[1][(p-g.split)*PageSize:][:PageSize]
	}
	return g.mems[0][p*PageSize:][:PageSize]
}

// touchOrder gives each thread its pages in order.
func touchOrder(cfg *helperConfig) [][]int64 {
	n := cfg.Image.Pages
	all := make([]int64, n)
	for i := range all {
		all[i] = int64(i)
	}
	switch cfg.Pattern {
	case "random":
		r := rand.New(rand.NewPCG(cfg.Image.Seed, 1))
		r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	case "list":
		all = cfg.List
	case "same":
		out := make([][]int64, cfg.Threads)
		for t := range out {
			out[t] = all
		}
		return out
	}
	out := make([][]int64, cfg.Threads)
	for i, p := range all {
		out[i%cfg.Threads] = append(out[i%cfg.Threads], p)
	}
	return out
}

func runClientHelper(cfg *helperConfig) int {
	ctx := context.Background()
	g, err := newGuestMemory("memory", cfg.Image.Pages, cfg.Split)
	if err != nil {
		return fail(exitSetup, "mmap: %v", err)
	}
	opt := RegisterOptions{Record: cfg.Record, Prefetch: cfg.Prefetch}
	regStart := time.Now()
	var c *Client
	if cfg.UffdFirstOnly {
		fd, err := NewUserfaultfd(g.regions[:1])
		if err != nil {
			return fail(exitSetup, "%v", err)
		}
		if c, err = Dial(ctx, cfg.Socket); err != nil {
			return fail(exitSetup, "%v", err)
		}
		if err := c.Register(ctx, fd, g.regions, opt); err != nil {
			return fail(exitSetup, "register: %v", err)
		}
	} else if c, _, err = Attach(ctx, cfg.Socket, g.regions, opt); err != nil {
		return fail(exitSetup, "%v", err)
	}
	if cfg.HeartbeatMs > 0 {
		hb := time.Duration(cfg.HeartbeatMs) * time.Millisecond
		c.Heartbeat(hb, 5*hb)
	}
	// What a VMM does: on a pager error, stop the VM (here: exit) at once,
	// while the faulting threads stay blocked on the uffd we keep open.
	go func() {
		err := <-c.Err()
		fmt.Fprintf(os.Stderr, "PAGER-ERROR: %v\n", err)
		os.Exit(exitPagerErr)
	}()
	if cfg.WaitPrefetch {
		st, err := c.WaitPrefetch(ctx, 30*time.Second)
		if errors.Is(err, ErrFrameUnavailable) {
			// Serving failed while prefetching: what a VMM does on Err.
			fmt.Fprintf(os.Stderr, "PAGER-ERROR: %v\n", err)
			os.Exit(exitPagerErr)
		}
		if err != nil {
			return fail(exitSetup, "wait_prefetch: %v", err)
		}
		if !st.PrefetchDone {
			return fail(exitSetup, "prefetch not done after 30s: %+v", st)
		}
		if st.PrefetchTime <= 0 {
			return fail(exitSetup, "prefetch done but its time is %v: %+v", st.PrefetchTime, st)
		}
	}
	exp, err := expectedFor(cfg)
	if err != nil {
		return fail(exitSetup, "%v", err)
	}
	var lat histogram
	touched, elapsed, code := touchPages(cfg, exp, g.page, &lat)
	if code != exitOK {
		return code
	}
	if cfg.DropPages > 0 {
		if code := dropAndReread(g.mems[0][:cfg.DropPages*PageSize]); code != exitOK {
			return code
		}
	}
	res := helperResult{Touched: touched, TouchNs: int64(elapsed), TotalNs: int64(time.Since(regStart)),
		TouchP50: lat.quantile(0.5), TouchP99: lat.quantile(0.99)}
	if res.WorkingSet, err = c.Ready(ctx); err != nil {
		return fail(exitSetup, "ready: %v", err)
	}
	if res.Stats, err = c.Stats(ctx); err != nil {
		return fail(exitSetup, "stats: %v", err)
	}
	b, _ := json.Marshal(res)
	if err := os.WriteFile(cfg.Out, b, 0o644); err != nil {
		return fail(exitSetup, "%v", err)
	}
	c.Close()
	return exitOK
}

// touchPages reads every page of the touch order from cfg.Threads threads
// and checks it against exp.
func touchPages(cfg *helperConfig, exp expected, page func(int64) []byte, lat *histogram) (int64, time.Duration, int) {
	order := touchOrder(cfg)
	var mismatches, touched atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for t := range order {
		wg.Add(1)
		go func(pages []int64) {
			defer wg.Done()
			runtime.LockOSThread()
			want := make([]byte, PageSize)
			got := make([]byte, PageSize)
			var pr, pw int = -1, -1
			if cfg.Method == "syscall" {
				var p [2]int
				if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
					fmt.Fprintln(os.Stderr, "pipe:", err)
					os.Exit(exitSetup)
				}
				pr, pw = p[0], p[1]
				defer unix.Close(pr)
				defer unix.Close(pw)
			}
			var sink byte
			for _, p := range pages {
				if cfg.NoCheck {
					sink += page(p)[0]
					touched.Add(1)
					continue
				}
				exp.FillPage(p, want)
				mem := page(p)
				if cfg.Method == "syscall" {
					// The kernel reads the page (copy_from_user): the
					// fault happens inside a syscall, as in KVM_RUN.
					if err := pipeThrough(pw, pr, mem, got); err != nil {
						fmt.Fprintf(os.Stderr, "page %d: %v\n", p, err)
						os.Exit(exitSetup)
					}
				} else if cfg.TimeTouches {
					t0 := time.Now()
					copy(got, mem)
					lat.record(time.Since(t0))
				} else {
					copy(got, mem)
				}
				if !bytes.Equal(got, want) {
					if mismatches.Add(1) == 1 {
						fmt.Fprintf(os.Stderr, "MISMATCH at image page %d: got %x..., want %x...\n", p, got[:16], want[:16])
					}
				}
				touched.Add(1)
			}
			if sink == 1 {
				fmt.Fprint(io.Discard, sink)
			}
		}(order[t])
	}
	wg.Wait()
	elapsed := time.Since(start)
	if mismatches.Load() > 0 {
		return 0, 0, fail(exitMismatch, "%d pages with wrong bytes", mismatches.Load())
	}
	return touched.Load(), elapsed, exitOK
}

func runMmapHelper(cfg *helperConfig) int {
	m, err := MapFile(cfg.MapPath, 0, cfg.Image.Pages*PageSize)
	if err != nil {
		return fail(exitSetup, "%v", err)
	}
	defer m.Close()
	exp, err := expectedFor(cfg)
	if err != nil {
		return fail(exitSetup, "%v", err)
	}
	start := time.Now()
	if cfg.Populate != nil {
		if err := m.Populate(cfg.Populate, "memory", 0, PopulateRead); err != nil {
			return fail(exitSetup, "%v", err)
		}
	}
	var lat histogram
	touched, elapsed, code := touchPages(cfg, exp, func(p int64) []byte { return m.Mem[p*PageSize:][:PageSize] }, &lat)
	if code != exitOK {
		return code
	}
	_ = elapsed // TouchNs includes the populate step
	b, _ := json.Marshal(helperResult{Touched: touched, TouchNs: int64(time.Since(start)), TotalNs: int64(time.Since(start)),
		TouchP50: lat.quantile(0.5), TouchP99: lat.quantile(0.99)})
	if err := os.WriteFile(cfg.Out, b, 0o644); err != nil {
		return fail(exitSetup, "%v", err)
	}
	return exitOK
}

func dropAndReread(mem []byte) int {
	if err := unix.Madvise(mem, unix.MADV_DONTNEED); err != nil {
		return fail(exitSetup, "madvise: %v", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return fail(exitSetup, "pipe: %v", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	got := make([]byte, PageSize)
	zero := make([]byte, PageSize)
	for off := 0; off < len(mem); off += PageSize {
		if err := pipeThrough(p[1], p[0], mem[off:off+PageSize], got); err != nil {
			return fail(exitSetup, "dropped page %d: %v", off/PageSize, err)
		}
		if !bytes.Equal(got, zero) {
			return fail(exitMismatch, "MISMATCH: dropped page %d reads %x..., want zeros", off/PageSize, got[:16])
		}
	}
	return exitOK
}

func pipeThrough(pw, pr int, page, buf []byte) error {
	n, _, errno := unix.Syscall(unix.SYS_WRITE, uintptr(pw), uintptr(unsafe.Pointer(&page[0])), uintptr(len(page)))
	if errno != 0 || int(n) != len(page) {
		return fmt.Errorf("write page to pipe: %d, %v", n, errno)
	}
	for got := 0; got < len(buf); {
		m, err := unix.Read(pr, buf[got:])
		if err != nil {
			return err
		}
		got += m
	}
	return nil
}

// ---- parent side ----

// testServer runs a Server in this process (it never touches the served
// memory) on a socket in a temp dir.
func testServer(t testing.TB, srv *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pager.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return 10s after cancel")
		}
	})
	return sock
}

type childOutcome struct {
	code    int
	stderr  string
	res     helperResult
	elapsed time.Duration
}

// startChild starts the test binary in helper mode; the caller waits.
func startChild(t testing.TB, cfg helperConfig, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// In a file: a page list or working set can exceed what exec passes.
	path := filepath.Join(t.TempDir(), "helper.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+path), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// runClient runs a client (or mmap) child to completion, bounded by limit.
func runClient(t testing.TB, cfg helperConfig, limit time.Duration, env ...string) childOutcome {
	t.Helper()
	if cfg.Mode == "" {
		cfg.Mode = "client"
	}
	if cfg.Out == "" {
		cfg.Out = filepath.Join(t.TempDir(), "result.json")
	}
	if cfg.Threads == 0 {
		cfg.Threads = 1
	}
	cmd, stderr := startChild(t, cfg, env...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var out childOutcome
	select {
	case <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("client child still running after %v (killed); stderr:\n%s", limit, stderr)
	}
	out.elapsed = time.Since(start)
	out.code = cmd.ProcessState.ExitCode()
	out.stderr = stderr.String()
	if out.code == exitOK {
		b, err := os.ReadFile(cfg.Out)
		if err != nil {
			t.Fatalf("child result: %v", err)
		}
		if err := json.Unmarshal(b, &out.res); err != nil {
			t.Fatalf("child result: %v", err)
		}
	}
	return out
}

// startServerChild runs a daemon in a child process and waits until it
// listens.
func startServerChild(t testing.TB, cfg helperConfig) *exec.Cmd {
	t.Helper()
	cfg.Mode = "server"
	cmd, stderr := startChild(t, cfg)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line) == "READY"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("server child did not start; stderr:\n%s", stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server child not ready after 10s")
	}
	return cmd
}
