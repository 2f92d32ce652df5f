package lab

import (
	"context"
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

// wedgePoll is how often the console is read.
const wedgePoll = 5 * time.Second

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

// watchConsole cancels the returned context once the console file shows the
// lab VM wedged, so a dead lab costs minutes, not the whole timeout. The
// function reports whether that happened. The watcher ends with ctx.
func watchConsole(parent context.Context, file string) (context.Context, func() bool) {
	ctx, cancel := context.WithCancel(parent)
	var hit atomic.Bool
	go func() {
		defer cancel()
		t := time.NewTicker(wedgePoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if b, err := os.ReadFile(file); err == nil && consoleWedged(b) {
					hit.Store(true)
					return
				}
			}
		}
	}()
	return ctx, hit.Load
}
