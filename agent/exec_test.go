package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/syncbuf"
)

func TestExec(t *testing.T) {
	dial := startServer(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name           string
		cmd            Command
		stdout, stderr string
		status         ExitStatus
	}{
		{"args", Command{Args: []string{"echo", "a b", "c"}}, "a b c\n", "", ExitStatus{}},
		{"exit code", Command{Args: []string{"sh", "-c", "exit 7"}}, "", "", ExitStatus{Code: 7}},
		{"separate streams", Command{Args: []string{"sh", "-c", "echo out; echo err >&2; echo out2"}}, "out\nout2\n", "err\n", ExitStatus{}},
		{"env", Command{Args: []string{"sh", "-c", `echo "$SMOLVM_A-$SMOLVM_B"`}, Env: []string{"SMOLVM_A=1", "SMOLVM_B=x y", "SMOLVM_A=2"}}, "2-x y\n", "", ExitStatus{}},
		{"cwd", Command{Args: []string{"pwd"}, Dir: dir}, dir + "\n", "", ExitStatus{}},
		{"stdin", Command{Args: []string{"sh", "-c", "tr a-z A-Z; echo done >&2"}, Stdin: strings.NewReader("hello\nworld\n")}, "HELLO\nWORLD\n", "done\n", ExitStatus{}},
		{"no stdin is /dev/null", Command{Args: []string{"cat"}}, "", "", ExitStatus{}},
		{"killed by signal", Command{Args: []string{"sh", "-c", "kill -TERM $$"}}, "", "", ExitStatus{Code: 128 + 15, Signal: 15}},
		{"false", Command{Args: []string{"false"}}, "", "", ExitStatus{Code: 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, st, err := run(t, dial, c.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if out != c.stdout || errOut != c.stderr || st != c.status {
				t.Errorf("got stdout %q stderr %q status %+v, want %q %q %+v", out, errOut, st, c.stdout, c.stderr, c.status)
			}
		})
	}
}

func TestExecStartErrors(t *testing.T) {
	dial := startServer(t)
	for _, c := range []struct {
		name    string
		cmd     Command
		mention string
	}{
		{"missing binary", Command{Args: []string{"/nonexistent/smolvm-nope"}}, "smolvm-nope"},
		{"not in PATH", Command{Args: []string{"smolvm-no-such-command"}}, "smolvm-no-such-command"},
		{"bad dir", Command{Args: []string{"true"}, Dir: "/nonexistent-dir"}, "nonexistent-dir"},
		{"empty arg0", Command{Args: []string{""}}, "empty command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, _, err := run(t, dial, c.cmd)
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != CodeStart || !errors.Is(err, ErrRemote) {
				t.Fatalf("error %v: want a RemoteError with code %q", err, CodeStart)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("error %q does not mention %q", err, c.mention)
			}
		})
	}
}

// TestExecLargeOutput streams 8 MiB each way and checks the bytes.
func TestExecLargeOutput(t *testing.T) {
	dial := startServer(t)
	in := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16)
	in[12345] = 'X'
	var out syncbuf.Buffer
	st, err := Run(testCtx(t), dial(), Command{Args: []string{"cat"}, Stdin: bytes.NewReader(in), Stdout: &out})
	if err != nil || st.Code != 0 {
		t.Fatalf("status %+v err %v", st, err)
	}
	if sha256.Sum256([]byte(out.String())) != sha256.Sum256(in) {
		t.Fatalf("output of %d bytes differs from the %d bytes of input", len(out.String()), len(in))
	}
}

func TestExecSignal(t *testing.T) {
	dial := startServer(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			var out syncbuf.Buffer
			// The trap proves the signal reaches the shell, not only a child.
			s, err := Start(testCtx(t), dial(), Command{Args: []string{"sh", "-c", "echo started; sleep 30"}, Stdout: &out})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return out.String() == "started\n" })
			if err := s.Signal(sig); err != nil {
				t.Fatal(err)
			}
			st, err := s.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if want := (ExitStatus{Code: 128 + int(sig), Signal: int(sig)}); st != want {
				t.Errorf("status %+v, want %+v", st, want)
			}
		})
	}
}

// TestHostGoneKillsCommand: a session whose host disappears must not leave
// its command (or the command's children) running.
func TestHostGoneKillsCommand(t *testing.T) {
	dial := startServer(t)
	pidFile := t.TempDir() + "/child.pid"
	var out syncbuf.Buffer
	c := dial()
	s, err := Start(testCtx(t), c, Command{Args: []string{"sh", "-c", "sleep 60 & echo $! > " + pidFile + "; echo go; wait"}, Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return out.String() == "go\n" })
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscan(string(b), &child); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := s.Wait(); err == nil {
		t.Error("Wait after closing the connection returned no error")
	}
	for _, pid := range []int{s.PID(), child} {
		waitFor(t, func() bool { return !alive(pid) })
	}
}

func TestSequentialAndConcurrentSessions(t *testing.T) {
	dial := startServer(t)
	for i := 0; i < 20; i++ {
		out, _, st, err := run(t, dial, Command{Args: []string{"echo", fmt.Sprint("seq-", i)}})
		if err != nil || st.Code != 0 || out != fmt.Sprintf("seq-%d\n", i) {
			t.Fatalf("session %d: out %q status %+v err %v", i, out, st, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each sleeps so that all six overlap.
			var out syncbuf.Buffer
			st, err := Run(testCtx(t), dial(), Command{Args: []string{"sh", "-c", fmt.Sprintf("sleep 0.3; echo con-%d; exit %d", i, i)}, Stdout: &out})
			if err != nil || st.Code != i || out.String() != fmt.Sprintf("con-%d\n", i) {
				errs <- fmt.Errorf("session %d: out %q status %+v err %v", i, out.String(), st, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestContextCancelEndsSession(t *testing.T) {
	dial := startServer(t)
	ctx, cancel := context2(t)
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, dial(), Command{Args: []string{"sh", "-c", "echo up; sleep 60"}, Stdout: &out})
		done <- err
	}()
	waitFor(t, func() bool { return out.String() == "up\n" })
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Errorf("Run after cancel: %v, want a cancel error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of cancel")
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie still answers kill(0); it is dead for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
