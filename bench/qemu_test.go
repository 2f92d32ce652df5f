package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLineWatch(t *testing.T) {
	w := newLineWatch("smolvm-init: ready", "MARK")
	// Split writes, CRLF endings, the typed command echoed on its own line
	// and after a prompt: only the exact line counts.
	for _, chunk := range []string{"boot noise\r\nsmolvm-init: rea", "dy\r\n/ # echo MARK\r\n", "echo MARK\r\n", "MARK\r", "\nMARK\n"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	c := &child{done: make(chan struct{}), out: newTail(100)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, l := range []string{"smolvm-init: ready", "MARK"} {
		if at, err := w.wait(ctx, l, c); err != nil || at.IsZero() {
			t.Fatalf("wait %q: %v %v", l, at, err)
		}
	}
	w2 := newLineWatch("MARK")
	w2.Write([]byte("/ # echo MARK\r\necho MARK\npartial MARK"))
	close(c.done)
	if _, err := w2.wait(ctx, "MARK", c); err == nil || !strings.Contains(err.Error(), "QEMU exited") {
		t.Fatalf("an echoed command matched, or no exit error: %v", err)
	}
}

func TestTail(t *testing.T) {
	tl := newTail(8)
	fmt.Fprint(tl, "0123456789")
	fmt.Fprint(tl, "ab")
	if got := tl.String(); got != "456789ab" {
		t.Fatalf("tail = %q", got)
	}
}

// fakeMonitor serves QEMU's human monitor protocol on a unix socket:
// "info migrate" answers "active" twice, then "completed".
func fakeMonitor(t *testing.T, path string, final string) *[]string {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var got []string
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(conn, "QEMU 7.2 monitor - type 'help' for more information\r\n(qemu) ")
		sc := bufio.NewScanner(conn)
		polls := 0
		for sc.Scan() {
			line := sc.Text()
			got = append(got, line)
			switch line {
			case "info migrate":
				polls++
				status := "active"
				if polls > 2 {
					status = final
				}
				fmt.Fprintf(conn, "info migrate\r\nMigration status: %s\r\n(qemu) ", status)
			case "quit":
				return
			default:
				fmt.Fprintf(conn, "%s\r\n(qemu) ", line)
			}
		}
	}()
	return &got
}

func TestMonitor(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "m.sock")
	got := fakeMonitor(t, sock, "completed")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := dialMonitor(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out, err := m.cmd(ctx, `migrate "exec:cat > 'x'"`)
	if err != nil || !strings.Contains(out, "migrate") {
		t.Fatalf("migrate: %q %v", out, err)
	}
	for i := 0; i < 3; i++ {
		out, err = m.cmd(ctx, "info migrate")
		if err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(out, "Migration status: completed") {
		t.Fatalf("third info migrate: %q", out)
	}
	if _, err := m.cmd(ctx, "quit"); err != nil {
		t.Fatalf("quit (the monitor closing is fine): %v", err)
	}
	m.Close()
	if len(*got) != 5 || (*got)[0] != `migrate "exec:cat > 'x'"` {
		t.Fatalf("monitor saw %q", *got)
	}

	// A monitor that never prompts: bounded by the context.
	ln, err := net.Listen("unix", filepath.Join(dir, "mute.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			time.Sleep(2 * time.Second)
		}
	}()
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	if _, err := dialMonitor(sctx, filepath.Join(dir, "mute.sock")); err == nil {
		t.Fatal("a silent monitor was accepted")
	}
}

func TestShellQuote(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"plain", "sp ace", "it's", `$(x)"`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("ok:"+name), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", "cat "+shellQuote(p)).Output()
		if err != nil || string(out) != "ok:"+name {
			t.Fatalf("cat %s: %q %v", shellQuote(p), out, err)
		}
	}
}

func TestChildStop(t *testing.T) {
	// A child that ignores SIGTERM and stdin EOF is killed after the grace.
	c, err := startChild("sh", []string{"-c", "trap '' TERM; echo started; sleep 30"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.stop(func() { c.cmd.Process.Signal(os.Interrupt) }, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !c.exited() || time.Since(start) > 10*time.Second {
		t.Fatalf("child not ended promptly (exited %v after %v)", c.exited(), time.Since(start))
	}
}
