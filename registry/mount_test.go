package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/fusefs"
	"golang.org/x/sys/unix"
)

// smolmount oci://REF serves memory lazily: reading N random pages (from
// this process; the mount is served by the smolmount child) fetches only
// the frames holding them, as .stats shows.
func TestSmolmountOCILazy(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs /dev/fuse and root")
	}
	reg := startRegistry(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "smolmount")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/smolvm/smolvm/cmd/smolmount").CombinedOutput(); err != nil {
		t.Fatalf("building smolmount: %v\n%s", err, out)
	}
	bundle, img := makeBundle(t, dir, 32<<20, 8, "")
	ref := reg.Host + "/vm:mount"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	cmd := exec.Command(bin, "oci://"+ref, mnt, "--insecure")
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(dir, "xdg"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "smolmount: ready") && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			exec.Command(bin, "-u", mnt).Run()
			t.Errorf("smolmount did not stop on SIGTERM")
		}
	})
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("smolmount exited before ready: %s", stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("smolmount not ready after 30 s: %s", stderr.String())
	}

	want := mustRead(t, img)
	f, err := os.Open(filepath.Join(mnt, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// One page per read, no readahead: what a pager faulting does.
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	ref0, err := chunkstore.Open(bundle, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref0.Close()
	im, _ := ref0.Image("memory")
	const n = 32
	frames, frameBytes := readRandomPages(t, f, want, im, ref0.Format(), n, 8)
	sb, err := os.ReadFile(filepath.Join(mnt, ".stats"))
	if err != nil {
		t.Fatal(err)
	}
	_, raw, err := fusefs.ParseStats(sb)
	if err != nil {
		t.Fatal(err)
	}
	var st chunkstore.Stats
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d random pages: %d frames (%d bytes) hold them; .stats: %d frames, %d bytes fetched of a %d-byte bundle",
		n, frames, frameBytes, st.FramesFetched, st.BytesFetched, ref0.Format().Size())
	if st.FramesFetched != int64(frames) || st.BytesFetched != frameBytes {
		t.Fatalf(".stats: %d frames / %d bytes fetched; the pages read live in %d frames / %d bytes", st.FramesFetched, st.BytesFetched, frames, frameBytes)
	}
}
