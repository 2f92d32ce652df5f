package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smolvm/smolvm/vmm/control"
)

// tail keeps the last bytes written to it: a child's output, shown when it
// fails.
type tail struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTail(max int) *tail { return &tail{max: max} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// child is a started process with its exit watched.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *tail
	done  chan struct{} // closed when the process has exited
	err   error         // its Wait error, valid after done
}

// startChild starts name with args, stdin a pipe (kept open: a console
// that sees EOF could end the guest's shell), stdout and stderr into a
// tail buffer (and onLine, when set, line by line with their times).
func startChild(name string, args []string, env []string, stdout io.Writer) (*child, error) {
	c := &child{out: newTail(16 << 10), done: make(chan struct{})}
	c.cmd = exec.Command(name, args...)
	c.cmd.Env = append(os.Environ(), env...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	c.cmd.Stdout = c.out
	if stdout != nil {
		c.cmd.Stdout = io.MultiWriter(c.out, stdout)
	}
	c.cmd.Stderr = c.out
	// Its own process group, killed as a whole; output copying ends 5 s
	// after the process even if a grandchild (a detached bundle daemon)
	// still holds the pipe.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.WaitDelay = 5 * time.Second
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", filepath.Base(name), err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the process: ask (when ask is set) and wait up to grace, then
// SIGKILL and wait up to 10 s more.
func (c *child) stop(ask func(), grace time.Duration) error {
	if ask != nil && !c.exited() {
		ask()
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("bench: %s (pid %d) did not exit after SIGKILL", filepath.Base(c.cmd.Path), c.cmd.Process.Pid)
		}
	}
	c.stdin.Close()
	return nil
}

// startSmolvm runs `smolvm ARGS` for a VM called name (its state dir under
// g.RunDir) and waits until the control socket reports the guest agent
// ready. The ready time is the control plane's ready_at minus the moment
// the process was started.
func startSmolvm(ctx context.Context, g *Guest, name string, args []string) (*Instance, error) {
	start := time.Now()
	c, err := startChild(g.Smolvm, args, []string{"SMOLVM_RUN_DIR=" + g.RunDir}, nil)
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(g.RunDir, name, control.ControlSocketName)
	client := control.NewClient(socket)
	stop := func() error {
		return c.stop(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := client.Stop(sctx); err != nil {
				_ = c.cmd.Process.Kill()
			}
		}, 30*time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, g.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return nil, fmt.Errorf("bench: smolvm %s (%s) exited before the guest was ready (%v): %s", args[0], name, c.err, c.out)
		case <-ctx.Done():
			_ = stop()
			return nil, fmt.Errorf("bench: smolvm %s (%s): guest not ready after %v: %s", args[0], name, g.ReadyTimeout, c.out)
		case <-tick.C:
		}
		if _, err := os.Stat(socket); err != nil {
			continue
		}
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := client.Status(sctx)
		scancel()
		if err != nil || !st.Ready || st.ReadyAt == nil {
			continue
		}
		return &Instance{
			Ready:   st.ReadyAt.Sub(start),
			PIDs:    []int{c.cmd.Process.Pid},
			RAMRead: Unknown,
			Faults:  Unknown,
			Stop:    stop,
			Output:  c.out.String,
		}, nil
	}
}

// runStats is the part of `smolvm run --stats FILE` the bench reads.
type runStats struct {
	Timeline map[string]any `json:"timeline"`
	Memory   struct {
		BytesRead int64 `json:"bytes_read"`
		Pager     *struct {
			Faults int64 `json:"faults"`
		} `json:"pager"`
		PrefetchUse *PrefetchUse `json:"prefetch_use"`
	} `json:"memory"`
}

// readRunStats waits (up to 10 s: run writes the file just after it
// reports ready) for a --stats file and returns guest RAM bytes read and
// faults (Unknown when the paging mode has no fault count) and the
// prefetched pages used and wasted (nil when not measured).
func readRunStats(ctx context.Context, path string) (read, faults int64, prefetch *PrefetchUse, phases []Phase, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var st runStats
			if err := json.Unmarshal(b, &st); err != nil {
				return Unknown, Unknown, nil, nil, fmt.Errorf("bench: %s: %w", path, err)
			}
			faults = Unknown
			if st.Memory.Pager != nil {
				faults = st.Memory.Pager.Faults
			}
			return st.Memory.BytesRead, faults, st.Memory.PrefetchUse, timelinePhases(st.Timeline), nil
		}
		select {
		case <-ctx.Done():
			return Unknown, Unknown, nil, nil, fmt.Errorf("bench: smolvm run wrote no --stats file %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// timelinePhases turns run's timeline (times since the restore began,
// named NAME_s in seconds or NAME_ns in nanoseconds) into phases in time
// order; phases not reached (0) are left out.
func timelinePhases(tl map[string]any) []Phase {
	var out []Phase
	for k, v := range tl {
		x, ok := v.(float64)
		if !ok || x <= 0 {
			continue
		}
		if name, ok := strings.CutSuffix(k, "_ns"); ok {
			out = append(out, Phase{Name: name, Seconds: x / 1e9})
		} else if name, ok := strings.CutSuffix(k, "_s"); ok {
			out = append(out, Phase{Name: name, Seconds: x})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seconds < out[j].Seconds })
	return out
}

// errSkip marks a method that cannot run here at all.
var errSkip = errors.New("not available")
