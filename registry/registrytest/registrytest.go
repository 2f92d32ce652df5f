package registrytest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Bin is the registry binary (package docker-registry).
const Bin = "/usr/bin/docker-registry"

// Registry is a docker-registry process on 127.0.0.1, storing under Root,
// stopped at the test's cleanup.
type Registry struct {
	Host string // 127.0.0.1:PORT
	Root string // storage rootdirectory
}

// Start runs a registry on a free port; it skips the test when the binary
// is missing (make test installs it: scripts/deps.sh).
func Start(t testing.TB) *Registry {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		t.Skipf("%s missing: install Debian's docker-registry (make test does it: scripts/deps.sh)", Bin)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "storage")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	conf := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, root, host)
	cpath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cpath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Bin, "serve", cpath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("docker-registry pid %d did not exit", cmd.Process.Pid)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return &Registry{Host: host, Root: root}
			}
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry exited: %v\n%s", err, b)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry not answering on %s after 15 s\n%s", host, b)
		}
	}
}

// StorageBytes sums the registry's stored files (bytes).
func (r *Registry) StorageBytes(t testing.TB) int64 {
	var n int64
	filepath.Walk(r.Root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// BlobPath is where the registry keeps blob d (sha256:HEX).
func (r *Registry) BlobPath(d string) string {
	h := d[len("sha256:"):]
	return filepath.Join(r.Root, "docker/registry/v2/blobs/sha256", h[:2], h, "data")
}
