package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/smolvm/smolvm/vmm/guest"
)

// lineWatch is a QEMU's stdout: it records when a wanted line (exactly,
// after trimming "\r") first appears.
type lineWatch struct {
	mu    sync.Mutex
	cur   []byte
	want  map[string]chan struct{}
	seen  map[string]time.Time
	lines int
}

func newLineWatch(want ...string) *lineWatch {
	w := &lineWatch{want: map[string]chan struct{}{}, seen: map[string]time.Time{}}
	for _, s := range want {
		w.want[s] = make(chan struct{})
	}
	return w
}

func (w *lineWatch) Write(p []byte) (int, error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range p {
		if c != '\n' {
			if len(w.cur) < 4096 {
				w.cur = append(w.cur, c)
			}
			continue
		}
		line := strings.TrimRight(string(w.cur), "\r")
		w.cur = w.cur[:0]
		w.lines++
		if ch, ok := w.want[line]; ok {
			if _, done := w.seen[line]; !done {
				w.seen[line] = now
				close(ch)
			}
		}
	}
	return len(p), nil
}

// wait returns when line was seen (and when), or an error when the child
// ends, ctx ends first.
func (w *lineWatch) wait(ctx context.Context, line string, c *child) (time.Time, error) {
	select {
	case <-w.want[line]:
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.seen[line], nil
	case <-c.done:
		return time.Time{}, fmt.Errorf("QEMU exited (%v) before printing %q: %s", c.err, line, c.out)
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("no %q from QEMU: %w; output: %s", line, ctx.Err(), c.out)
	}
}

// qemuArgs is QEMU/KVM running the bench's guest: same kernel, initramfs,
// command line, vCPUs and RAM as smolvm's methods, console on stdio.
func qemuArgs(g *Guest) []string {
	return []string{
		"-accel", "kvm", "-cpu", "host", "-smp", strconv.Itoa(g.CPUs), "-m", fmt.Sprintf("%dM", g.MemBytes>>20),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio",
		"-kernel", g.Kernel, "-initrd", g.Initrd, "-append", g.Cmdline,
	}
}

func checkQEMU(g *Guest) error {
	if g.QEMU == "" {
		return fmt.Errorf("%w: qemu-system-x86_64 is not installed (make deps)", errSkip)
	}
	return nil
}

func qemuBoot() Method {
	return Method{
		Name:  MethodQEMUBoot,
		Desc:  "QEMU/KVM boot of the same kernel and initramfs to the serial ready marker",
		check: checkQEMU,
		size:  bootSize,
		start: func(ctx context.Context, g *Guest, _ *prepared, _ string) (*Instance, error) {
			w := newLineWatch(guest.ReadyMarker)
			start := time.Now()
			c, err := startChild(g.QEMU, qemuArgs(g), nil, w)
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(ctx, g.ReadyTimeout)
			defer cancel()
			at, err := w.wait(ctx, guest.ReadyMarker, c)
			if err != nil {
				_ = c.stop(nil, 0)
				return nil, fmt.Errorf("bench: qemu-boot: %w", err)
			}
			return &Instance{Ready: at.Sub(start), PIDs: []int{c.cmd.Process.Pid},
				RAMRead: Unknown, Faults: Unknown, Stop: qemuStop(c)}, nil
		},
	}
}

func qemuStop(c *child) func() error {
	return func() error {
		return c.stop(func() { _ = c.cmd.Process.Signal(syscall.SIGTERM) }, 10*time.Second)
	}
}

// probe types "echo MARK" on the guest's console every 100 ms until the
// shell's answer, the line MARK, comes back: the restored guest runs.
func probe(ctx context.Context, c *child, w *lineWatch, mark string) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if _, err := c.stdin.Write([]byte("echo " + mark + "\n")); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w.wait(ctx, mark, c)
}

func qemuRestore() Method {
	return Method{
		Name:       MethodQEMURestore,
		Desc:       `QEMU/KVM -incoming "exec:cat FILE" of the same guest saved at its shell prompt, to a console echo`,
		check:      checkQEMU,
		prepareKey: "qemu-migration",
		prepare:    qemuSave,
		start: func(ctx context.Context, g *Guest, p *prepared, id string) (*Instance, error) {
			mark := "smolvm-bench-restored-" + id
			w := newLineWatch(mark)
			start := time.Now()
			args := append(qemuArgs(g), "-incoming", "exec:cat "+shellQuote(p.Path))
			c, err := startChild(g.QEMU, args, nil, w)
			if err != nil {
				return nil, err
			}
			ctx, cancel := context.WithTimeout(ctx, g.ReadyTimeout)
			defer cancel()
			at, err := probe(ctx, c, w, mark)
			if err != nil {
				_ = c.stop(nil, 0)
				return nil, fmt.Errorf("bench: qemu-restore: %w", err)
			}
			return &Instance{Ready: at.Sub(start), PIDs: []int{c.cmd.Process.Pid},
				RAMRead: p.Size, Faults: Unknown, Stop: qemuStop(c)}, nil
		},
	}
}

// qemuSave boots the guest under QEMU to its shell prompt and migrates it
// to a file (QEMU's own snapshot format: the stream -incoming reads).
func qemuSave(ctx context.Context, g *Guest) (*prepared, error) {
	mon := filepath.Join(g.Work, "qemu-monitor.sock")
	os.Remove(mon)
	out := filepath.Join(g.Work, fmt.Sprintf("qemu-%d.migration", g.MemBytes))
	w := newLineWatch(guest.ReadyMarker, "smolvm-bench-saving")
	args := append(qemuArgs(g), "-monitor", "unix:"+mon+",server=on,wait=off")
	c, err := startChild(g.QEMU, args, nil, w)
	if err != nil {
		return nil, err
	}
	defer c.stop(func() { _ = c.cmd.Process.Signal(syscall.SIGTERM) }, 10*time.Second)
	ctx, cancel := context.WithTimeout(ctx, g.ReadyTimeout+5*time.Minute)
	defer cancel()
	if _, err := w.wait(ctx, guest.ReadyMarker, c); err != nil {
		return nil, err
	}
	// The shell answers: the guest sits at its prompt, as a restore finds it.
	if _, err := probe(ctx, c, w, "smolvm-bench-saving"); err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond) // let the last probes' echoes drain
	m, err := dialMonitor(ctx, mon)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	// Migrate the running guest: QEMU stops it when the stream is
	// complete. (A guest stopped first would stay paused after -incoming.)
	if _, err := m.cmd(ctx, "migrate "+strconv.Quote("exec:cat > "+shellQuote(out))); err != nil {
		return nil, err
	}
	for {
		info, err := m.cmd(ctx, "info migrate")
		if err != nil {
			return nil, err
		}
		if strings.Contains(info, "Migration status: completed") || strings.Contains(info, "Migration status:  completed") {
			break
		}
		if strings.Contains(info, "failed") || strings.Contains(info, "cancelled") {
			return nil, fmt.Errorf("QEMU migration to %s failed: %s", out, info)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QEMU migration to %s: %w", out, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, _ = m.cmd(ctx, "quit")
	fi, err := os.Stat(out)
	if err != nil {
		return nil, fmt.Errorf("QEMU wrote no migration stream: %w", err)
	}
	return &prepared{Path: out, Size: fi.Size(), cleanup: func() { os.Remove(out) }}, nil
}

// monitor is a QEMU human monitor connection.
type monitor struct {
	net.Conn
	buf bytes.Buffer
}

func dialMonitor(ctx context.Context, path string) (*monitor, error) {
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			m := &monitor{Conn: conn}
			if _, err := m.readPrompt(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QEMU monitor %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cmd sends one monitor command and returns its output up to the next
// "(qemu) " prompt.
func (m *monitor) cmd(ctx context.Context, line string) (string, error) {
	if _, err := m.Write([]byte(line + "\n")); err != nil {
		return "", fmt.Errorf("QEMU monitor %q: %w", line, err)
	}
	out, err := m.readPrompt(ctx)
	if err != nil && line != "quit" {
		return "", fmt.Errorf("QEMU monitor %q: %w", line, err)
	}
	return out, nil
}

func (m *monitor) readPrompt(ctx context.Context) (string, error) {
	b := make([]byte, 4096)
	for {
		if i := bytes.Index(m.buf.Bytes(), []byte("(qemu) ")); i >= 0 {
			out := string(m.buf.Next(i))
			m.buf.Next(len("(qemu) "))
			return out, nil
		}
		dl := time.Now().Add(30 * time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		_ = m.SetReadDeadline(dl)
		n, err := m.Read(b)
		m.buf.Write(b[:n])
		if err != nil {
			return m.buf.String(), err
		}
	}
}

// shellQuote quotes s for sh -c (QEMU's exec: migration runs one).
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
