package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/vmm"
)

// TestBootRejectsBadInput runs `smolvm boot` in-process with inputs that
// must fail before any VM exists, with a message naming the cause.
func TestBootRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	notKernel := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKernel, []byte(strings.Repeat("plain text, not a kernel\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"not a kernel", []string{"--kernel", notKernel}, "not a bzImage"},
		{"missing kernel", []string{"--kernel", filepath.Join(dir, "missing")}, "no such file"},
		{"bad memory size", []string{"--kernel", notKernel, "--mem", "lots"}, "--mem"},
		{"zero vCPUs", []string{"--kernel", notKernel, "--cpus", "0"}, "vCPUs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"boot", "--initrd", "", "--cpus", "1", "--mem", "256M"}, c.args...)
			out, err := runCLI(t, args...)
			if err == nil {
				t.Fatalf("boot succeeded: %s", out)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("error %q does not mention %q", err, c.mention)
			}
			if exitCode(err) == 0 {
				t.Fatalf("exit status 0 for %v", err)
			}
			if c.mention != "--mem" && !errors.Is(err, vmm.ErrConfig) {
				t.Errorf("error %v is not vmm.ErrConfig", err)
			}
		})
	}
}

// chunkReader returns its chunks one Read at a time, then an error.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, os.ErrClosed
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

func TestConsoleEscape(t *testing.T) {
	for _, c := range []struct {
		name    string
		chunks  []string
		want    string
		escaped bool
	}{
		{"plain", []string{"ls\r"}, "ls\r", false},
		{"escape", []string{"ab\x01xcd"}, "abcd", true},
		{"escape across reads", []string{"ab\x01", "x"}, "ab", true},
		{"double ctrl-a sends one", []string{"\x01\x01z"}, "\x01z", false},
		{"ctrl-a then other", []string{"\x01c"}, "\x01c", false},
		{"upper X", []string{"\x01X"}, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var src chunkReader
			for _, s := range c.chunks {
				src.chunks = append(src.chunks, []byte(s))
			}
			escaped := false
			in := &consoleInput{r: &src, onEscape: func() { escaped = true }}
			var got []byte
			buf := make([]byte, 64)
			for {
				n, err := in.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if string(got) != c.want || escaped != c.escaped {
				t.Fatalf("got %q escaped=%v, want %q escaped=%v", got, escaped, c.want, c.escaped)
			}
		})
	}
}

// FuzzConsoleEscape: however input is split into reads, the filter never
// panics, passes every byte outside escape sequences through, and fires on
// Ctrl-A x.
func FuzzConsoleEscape(f *testing.F) {
	f.Add([]byte("ls\r\x01x"), uint8(3))
	f.Add([]byte("\x01\x01\x01x"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var src chunkReader
		step := int(split%7) + 1
		for i := 0; i < len(in); i += step {
			src.chunks = append(src.chunks, in[i:min(i+step, len(in))])
		}
		escapes := 0
		c := &consoleInput{r: &src, onEscape: func() { escapes++ }}
		var got []byte
		buf := make([]byte, 16)
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		// Reference: the same state machine over the whole input.
		var want []byte
		wantEsc, pending := 0, false
		for _, b := range in {
			switch {
			case pending && (b == 'x' || b == 'X'):
				wantEsc++
				pending = false
			case pending && b == escapeByte:
				want = append(want, b)
				pending = false
			case pending:
				want = append(want, escapeByte, b)
				pending = false
			case b == escapeByte:
				pending = true
			default:
				want = append(want, b)
			}
		}
		if string(got) != string(want) || escapes != wantEsc {
			t.Fatalf("input %q split %d: got %q (%d escapes), want %q (%d)", in, step, got, escapes, want, wantEsc)
		}
	})
}
