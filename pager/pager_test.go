package pager

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

func testImageConfig(pages int64) fakeimage.Config {
	return fakeimage.Config{Name: "memory", Pages: pages, Seed: 42, FramePages: 16, ZeroPercent: 10, ZeroRuns: true}
}

// Contents are bit-identical whatever the touch order, threads or fault
// path; every page is served exactly once.
func TestServeBitIdentical(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		threads int
		method  string
		split   bool
		workers int
	}{
		{"sequential one thread", "seq", 1, "direct", false, 0},
		{"sequential four threads", "seq", 4, "direct", false, 0},
		{"random four threads", "random", 4, "direct", false, 0},
		{"random two regions", "random", 4, "direct", true, 0},
		{"same pages from four threads", "same", 4, "direct", false, 0},
		{"kernel-mode faults", "random", 4, "syscall", true, 0},
		{"random four threads two workers", "random", 4, "direct", true, 2},
		{"same pages three workers", "same", 4, "direct", false, 3},
		{"kernel-mode faults four workers", "seq", 4, "syscall", false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testImageConfig(2048)
			im := fakeimage.New(cfg)
			sock := testServer(t, &Server{Open: openOnly(im), Workers: tt.workers})
			out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: tt.pattern, Threads: tt.threads, Method: tt.method, Split: tt.split}, 60*time.Second)
			if out.code != exitOK {
				t.Fatalf("client exit %d; stderr:\n%s", out.code, out.stderr)
			}
			st := out.res.Stats
			if st.PagesCopied+st.ZeroPages != cfg.Pages {
				t.Errorf("pages copied %d + zero %d = %d, want every page once (%d)", st.PagesCopied, st.ZeroPages, st.PagesCopied+st.ZeroPages, cfg.Pages)
			}
			var nz int64
			for p := int64(0); p < cfg.Pages; p++ {
				if !im.IsZero(p) {
					nz++
				}
			}
			if st.PagesCopied != nz {
				t.Errorf("pages copied %d, want the %d non-zero pages", st.PagesCopied, nz)
			}
			if st.FramesFetched != int64(im.Frames()) && !tt.split && tt.workers <= 1 {
				t.Errorf("frames fetched %d, want each of %d frames once", st.FramesFetched, im.Frames())
			}
			if st.Faults == 0 || st.Faults > cfg.Pages || st.FaultErrors != 0 {
				t.Errorf("implausible stats %+v", st)
			}
			if st.LatencyCount != st.Faults {
				t.Errorf("latency samples %d, faults %d", st.LatencyCount, st.Faults)
			}
			t.Logf("%s: %+v", tt.name, st)
		})
	}
}

// A stress run: GOGC=1 in the faulting process, every page, four threads,
// the Go runtime collecting constantly while threads fault.
func TestServeStressGOGC1(t *testing.T) {
	if testing.Short() {
		t.Skip("stress")
	}
	cfg := testImageConfig(8192)
	im := fakeimage.New(cfg)
	sock := testServer(t, &Server{Open: openOnly(im)})
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "random", Threads: 4, Method: "direct", Split: true}, 120*time.Second, "GOGC=1")
	if out.code != exitOK {
		t.Fatalf("client exit %d; stderr:\n%s", out.code, out.stderr)
	}
	if got := out.res.Stats.PagesCopied + out.res.Stats.ZeroPages; got != cfg.Pages {
		t.Errorf("pages filled %d, want %d", got, cfg.Pages)
	}
}

// A frame that fails verification is reported to the VMM naming the frame;
// the faulting thread never sees bytes.
func TestServeCorruptFrame(t *testing.T) {
	cfg := testImageConfig(512)
	im := fakeimage.New(cfg)
	bad := int32(im.Frames() / 2)
	im.SetCorrupt(bad)
	sock := testServer(t, &Server{Open: openOnly(im), FrameRetries: 1})
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 2, Method: "syscall"}, 30*time.Second)
	if out.code != exitPagerErr {
		t.Fatalf("client exit %d, want %d (pager error); stderr:\n%s", out.code, exitPagerErr, out.stderr)
	}
	for _, want := range []string{"cannot serve fault", "frame " + strconv.Itoa(int(bad)), "failed verification"} {
		if !strings.Contains(out.stderr, want) {
			t.Errorf("error does not mention %q:\n%s", want, out.stderr)
		}
	}
}

// A frame that never arrives: the fault is failed after bounded attempts.
func TestServeStalledFrame(t *testing.T) {
	cfg := testImageConfig(256)
	im := fakeimage.New(cfg)
	im.SetStall(true)
	sock := testServer(t, &Server{Open: openOnly(im), FrameTimeout: 100 * time.Millisecond, FrameRetries: 1})
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 1, Method: "syscall"}, 30*time.Second)
	if out.code != exitPagerErr || !strings.Contains(out.stderr, "deadline exceeded") {
		t.Fatalf("client exit %d, want %d naming the timeout; stderr:\n%s", out.code, exitPagerErr, out.stderr)
	}
	if out.elapsed > 10*time.Second {
		t.Errorf("took %v to report a stalled frame", out.elapsed)
	}
}

// The daemon is killed while faults are outstanding: the faulting process
// learns it within seconds and stops, instead of hanging or reading zeros.
func TestServeDaemonKilled(t *testing.T) {
	cfg := testImageConfig(4096)
	sock := t.TempDir() + "/d.sock"
	srv := startServerChild(t, helperConfig{Socket: sock, Image: cfg, DelayMs: 20})
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.Process.Signal(syscall.SIGKILL)
	}()
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 4, Method: "syscall"}, 30*time.Second)
	if out.code != exitPagerErr || !strings.Contains(out.stderr, "daemon connection lost") {
		t.Fatalf("client exit %d, want %d (daemon gone); stderr:\n%s", out.code, exitPagerErr, out.stderr)
	}
	if out.elapsed > 5*time.Second {
		t.Errorf("client took %v to notice the daemon died", out.elapsed)
	}
}

// A daemon that is alive but stuck (SIGSTOP) is caught by the heartbeat.
func TestServeDaemonStopped(t *testing.T) {
	cfg := testImageConfig(4096)
	sock := t.TempDir() + "/d.sock"
	srv := startServerChild(t, helperConfig{Socket: sock, Image: cfg, DelayMs: 20})
	go func() {
		time.Sleep(300 * time.Millisecond)
		srv.Process.Signal(syscall.SIGSTOP)
	}()
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 2, Method: "syscall", HeartbeatMs: 200}, 30*time.Second)
	if out.code != exitPagerErr || !strings.Contains(out.stderr, "no answer in 1s") {
		t.Fatalf("client exit %d, want %d (daemon not answering); stderr:\n%s", out.code, exitPagerErr, out.stderr)
	}
	if out.elapsed > 5*time.Second {
		t.Errorf("client took %v to notice the daemon stopped", out.elapsed)
	}
}

// Memory the VMM declared but did not register on its uffd: the daemon's
// copy fails and the VMM hears of it instead of the session ending quietly.
func TestServeUnregisteredRegion(t *testing.T) {
	cfg := testImageConfig(512)
	sock := testServer(t, &Server{Open: openOnly(fakeimage.New(cfg))})
	all := &WorkingSet{Version: 1, PageSize: PageSize, Ranges: []PageRange{{Artifact: "memory", Page: 0, Count: cfg.Pages}}}
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Split: true, UffdFirstOnly: true, Prefetch: all, WaitPrefetch: true,
		Pattern: "list", List: []int64{0}, Threads: 1}, 30*time.Second)
	if out.code != exitPagerErr || !strings.Contains(out.stderr, "not registered") {
		t.Fatalf("client exit %d, want %d naming the unregistered memory; stderr:\n%s", out.code, exitPagerErr, out.stderr)
	}
}

// Pages the VMM drops after they were served (MADV_DONTNEED, a balloon)
// fault again and read as zeros, as anonymous memory does.
func TestServeDroppedPages(t *testing.T) {
	cfg := testImageConfig(1024)
	sock := testServer(t, &Server{Open: openOnly(fakeimage.New(cfg))})
	out := runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: "seq", Threads: 2, Method: "direct", DropPages: 64}, 30*time.Second)
	if out.code != exitOK {
		t.Fatalf("client exit %d\n%s", out.code, out.stderr)
	}
	if st := out.res.Stats; st.Refilled != 64 {
		t.Errorf("refilled %d pages, want the 64 dropped: %+v", st.Refilled, st)
	}
}

// One daemon serves several VMs at once, and a VM killed mid-run does not
// disturb the others or leak its session (the server's cleanup waits for
// every session to end).
func TestServeSeveralVMs(t *testing.T) {
	cfg := testImageConfig(2048)
	im := fakeimage.New(cfg)
	im.SetDelay(2 * time.Millisecond)
	sock := testServer(t, &Server{Open: openOnly(im)})

	victim, _ := startChild(t, helperConfig{Mode: "client", Socket: sock, Image: cfg, Pattern: "seq", Threads: 1, Method: "syscall",
		Out: t.TempDir() + "/victim.json"})
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	results := make(chan childOutcome, 3)
	for i, pattern := range []string{"seq", "random", "same"} {
		go func() {
			results <- runClient(t, helperConfig{Socket: sock, Image: cfg, Pattern: pattern, Threads: 1 + i, Method: "direct"}, 60*time.Second)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	victim.Process.Kill()
	victim.Wait()
	for range 3 {
		select {
		case out := <-results:
			if out.code != exitOK {
				t.Errorf("client exit %d\n%s", out.code, out.stderr)
			}
		case <-time.After(90 * time.Second):
			t.Fatal("a client did not finish in 90s")
		}
	}
}
