package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"
)

// wedgeLockup is how long a soft lockup the lab VM's kernel reports must
// have lasted before the lab is given up for wedged. Short lockups happen
// under a loaded host; a CPU stuck this long has never come back.
const wedgeLockup = 120

// wedgePoll is how often the console is read (a variable for tests).
var wedgePoll = 5 * time.Second

var (
	lockupRE = regexp.MustCompile(`soft lockup - CPU#\d+ stuck for (\d+)s`)
	panicRE  = regexp.MustCompile(`Kernel panic - not syncing`)
)

// consoleWedged reports whether the console shows the lab VM's kernel
// panicked or a CPU soft-locked for at least wedgeLockup seconds.
func consoleWedged(console []byte) bool {
	if panicRE.Match(console) {
		return true
	}
	for _, m := range lockupRE.FindAllSubmatch(console, -1) {
		if n, err := strconv.Atoi(string(m[1])); err == nil && n >= wedgeLockup {
			return true
		}
	}
	return false
}

// consoleFileWedged is consoleWedged of the console file at path (false
// when it cannot be read).
func consoleFileWedged(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && consoleWedged(b)
}

// activity records when the lab last showed a sign of life on the command's
// output channel; the console file's size is the other sign.
type activity struct{ last atomic.Int64 } // unix nanoseconds

func (a *activity) touch() { a.last.Store(time.Now().UnixNano()) }

func (a *activity) since() time.Duration { return time.Since(time.Unix(0, a.last.Load())) }

// activeWriter passes writes through and records their time.
type activeWriter struct {
	w io.Writer
	a *activity
}

func (w activeWriter) Write(p []byte) (int, error) {
	w.a.touch()
	return w.w.Write(p)
}

// watchConsole cancels the returned context once the console file shows the
// lab VM wedged, or (silence > 0) once neither the console nor the output
// channel act has grown for silence, so a dead lab costs minutes, not the
// whole timeout. The function returns why it gave up ("" if it did not).
// The watcher ends with ctx.
func watchConsole(parent context.Context, file string, act *activity, silence time.Duration) (context.Context, func() string) {
	ctx, cancel := context.WithCancel(parent)
	var why atomic.Value
	why.Store("")
	act.touch()
	go func() {
		defer cancel()
		t := time.NewTicker(wedgePoll)
		defer t.Stop()
		size := int64(-1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b, err := os.ReadFile(file)
				if err == nil && consoleWedged(b) {
					why.Store("its kernel panicked or a CPU locked up")
					return
				}
				if n := int64(len(b)); n != size {
					size = n
					act.touch()
				}
				if silence > 0 && act.since() >= silence {
					why.Store(fmt.Sprintf("no output on its console or from the command for %v", silence))
					return
				}
			}
		}
	}()
	return ctx, func() string { return why.Load().(string) }
}
