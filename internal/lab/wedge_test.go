package lab

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConsoleWedged(t *testing.T) {
	for _, c := range []struct {
		console string
		want    bool
	}{
		{"", false},
		{"[  1.0] Linux version 6.1\n[  2.0] smolvm-lab: ok\n", false},
		{"[ 40.9] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [swapper/1:0]\n", false},
		{"[ 40.9] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [x]\n[ 140.9] watchdog: BUG: soft lockup - CPU#0 stuck for 122s! [kthreadd:2]\n", true},
		{"[202.4] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n", true},
		{"kvm [343]: vcpu0, guest rIP: 0xffffffffa3073744 Unhandled WRMSR(0xc0010007) = 0xffff\n", false},
	} {
		if got := consoleWedged([]byte(c.console)); got != c.want {
			t.Errorf("consoleWedged(%q) = %v, want %v", c.console, got, c.want)
		}
	}
}

// TestWatchConsole drives the watcher with a console file and an output
// channel that grow, stall or show a panic.
func TestWatchConsole(t *testing.T) {
	old := wedgePoll
	wedgePoll = 10 * time.Millisecond
	t.Cleanup(func() { wedgePoll = old })
	for _, c := range []struct {
		name    string
		silence time.Duration
		feed    func(console *os.File, out io.Writer) // called every 5 ms
		want    string                                // substring of the reason; "" = not given up
	}{
		{"console grows", 60 * time.Millisecond, func(f *os.File, _ io.Writer) { f.WriteString("x\n") }, ""},
		{"output grows", 60 * time.Millisecond, func(_ *os.File, w io.Writer) { w.Write([]byte("y\n")) }, ""},
		{"silent", 60 * time.Millisecond, func(*os.File, io.Writer) {}, "no output"},
		{"silent, no limit", 0, func(*os.File, io.Writer) {}, ""},
		{"panic", 0, func(f *os.File, _ io.Writer) { f.WriteString("Kernel panic - not syncing: x\n") }, "panicked"},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "console.log")
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			act := &activity{}
			parent, stop := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer stop()
			ctx, why := watchConsole(parent, file, act, c.silence)
			out := activeWriter{w: io.Discard, a: act}
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case <-tick.C:
					c.feed(f, out)
				}
			}
			got := why()
			if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("gave up for %q, want %q", got, c.want)
			}
			if c.want != "" && parent.Err() != nil {
				t.Fatal("the watcher did not give up before the run's own deadline")
			}
		})
	}
}

// A lab whose kernel panicked and whose QEMU exited before the console
// watch saw it is still told apart from one that merely ended: by the
// console file.
func TestConsoleFileWedged(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, console string
		want          bool
	}{
		{"panicked", "[   37.8] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n[   37.8] CPU: 0 PID: 368 Comm: smolvm\n", true},
		{"ended", "[    1.2] reboot: Power down\n", false},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.console), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := consoleFileWedged(path); got != tc.want {
			t.Errorf("%s: consoleFileWedged = %v, want %v", tc.name, got, tc.want)
		}
	}
	if consoleFileWedged(filepath.Join(dir, "missing")) {
		t.Error("a missing console reads as wedged")
	}
}
