package fusefs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mapperChild (FUSEFS_TEST_CHILD=mapper) maps a mounted image MAP_PRIVATE
// as a VMM maps guest memory, checks every byte against the spec, dirties
// one page in 64, prints "ok" and holds the mapping until stdin closes.
func mapperChild(path string) int {
	var is fakeImageSpec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &is); err != nil {
		fmt.Println("bad spec:", err)
		return 2
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(is.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer unix.Munmap(mem)
	const step = 8 << 20
	for off := int64(0); off < is.Size; off += step {
		n := min(step, is.Size-off)
		if want := expectedBytes(is, off, n); !bytes.Equal(mem[off:off+n], want) {
			fmt.Printf("mapping differs from the source in [%#x, %#x) at %#x\n", off, off+n, off+int64(firstDiff(mem[off:off+n], want)))
			return 1
		}
	}
	for off := 0; off < len(mem); off += 64 * 4096 {
		mem[off] ^= 1
	}
	fmt.Println("ok")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// mapping is a running mapper child.
type mapping struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startMappers starts n mapper children on path and waits until each has
// checked its mapping; Cleanup ends them.
func startMappers(t testing.TB, n int, path string, is fakeImageSpec) []*mapping {
	t.Helper()
	spec, _ := json.Marshal(is)
	var ms []*mapping
	t.Cleanup(func() {
		for _, m := range ms {
			m.stdin.Close()
			done := make(chan struct{})
			go func() { m.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				m.cmd.Process.Kill()
				<-done
			}
		}
	})
	lines := make(chan string, n)
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$", path)
		cmd.Env = append(os.Environ(), envChild+"=mapper", envSpec+"="+string(spec))
		cmd.Stderr = os.Stderr
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, &mapping{cmd: cmd, stdin: stdin})
		go func() {
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			lines <- strings.TrimSpace(line)
		}()
	}
	for range n {
		select {
		case line := <-lines:
			if line != "ok" {
				t.Fatalf("mapper: %q", line)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("mappers not done in 60s")
		}
	}
	return ms
}

// smapsOf sums the named fields (kB) of the mappings of path in
// /proc/PID/smaps.
func smapsOf(pid int, path string) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = len(f) >= 6 && f[len(f)-1] == path
		case in && len(f) == 3 && f[2] == "kB":
			v, _ := strconv.ParseInt(f[1], 10, 64)
			out[strings.TrimSuffix(f[0], ":")] += v
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("pid %d has no mapping of %s", pid, path)
	}
	return out, nil
}

// TestConcurrentMappings: 16 processes map memory MAP_PRIVATE at once; all
// see the right bytes, their writes stay private, each frame is fetched
// once.
func TestConcurrentMappings(t *testing.T) {
	spec := fakeSpec{FramePages: framePages, Images: []fakeImageSpec{{Name: "memory", Size: 64 << 20, Seed: 13}}}
	backends(t, spec, func(t *testing.T, spec fakeSpec) {
		s := serve(t, spec, nil)
		is := spec.Images[0]
		startMappers(t, 16, filepath.Join(s.dir, "memory"), is)
		_, st := readStats(t, s.dir)
		frames := newFakeImage(is, framePages, 0, &fakeStore{}).nframes
		if st.FramesFetched != int64(frames) {
			t.Errorf("16 mappings fetched %d frames, want each of %d once", st.FramesFetched, frames)
		}
		got, err := os.ReadFile(filepath.Join(s.dir, "memory"))
		if err != nil {
			t.Fatal(err)
		}
		if want := expectedBytes(is, 0, is.Size); !bytes.Equal(got, want) {
			t.Errorf("a private write reached the file at %d", firstDiff(got, want))
		}
	})
}
