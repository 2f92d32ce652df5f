package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

const registryBin = "/usr/bin/docker-registry"

// testRegistry is a docker-registry (CNCF distribution) process on
// 127.0.0.1, storing under Root, stopped at cleanup.
type testRegistry struct {
	Host string // 127.0.0.1:PORT
	Root string // storage rootdirectory
}

// startRegistry runs Debian's docker-registry on a free port.
func startRegistry(t testing.TB) *testRegistry {
	t.Helper()
	if _, err := os.Stat(registryBin); err != nil {
		t.Skipf("%s missing: install Debian's docker-registry (make test does it: scripts/deps.sh)", registryBin)
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
	cmd := exec.Command(registryBin, "serve", cpath)
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
				return &testRegistry{Host: host, Root: root}
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

// storageBytes sums the registry's stored files (what du counts, in bytes).
func (r *testRegistry) storageBytes(t testing.TB) int64 {
	var n int64
	filepath.Walk(r.Root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// blobPath is where the registry keeps blob d.
func (r *testRegistry) blobPath(d string) string {
	h := d[len("sha256:"):]
	return filepath.Join(r.Root, "docker/registry/v2/blobs/sha256", h[:2], h, "data")
}

var local = Remote{Insecure: true, NoCredentials: true}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// makeBundle packs a memory image of size bytes (seeded) and a small
// kernel into a self-contained bundle; returns the bundle and the image.
func makeBundle(t testing.TB, dir string, size int64, seed uint64, parent string) (bundle, img string) {
	t.Helper()
	img = filepath.Join(dir, fmt.Sprintf("mem-%d.img", seed))
	if _, err := os.Stat(img); err != nil {
		if err := sampleimage.WriteFile(img, size, sampleimage.MemoryMix, seed); err != nil {
			t.Fatal(err)
		}
	}
	kern := filepath.Join(dir, "kernel")
	if err := sampleimage.WriteFile(kern, 1<<20+555, sampleimage.Mix{Text: 1}, 99); err != nil {
		t.Fatal(err)
	}
	opts := chunkstore.PackOptions{Inputs: []chunkstore.PackInput{{Name: "memory", Path: img}, {Name: "kernel", Path: kern}},
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1, MemoryBytes: size}}}
	if parent != "" {
		pb, err := chunkstore.Open(parent, chunkstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer pb.Close()
		opts.Parent = pb
	}
	bundle = filepath.Join(dir, fmt.Sprintf("b-%d.smolmachine", seed))
	if _, err := chunkstore.Pack(ctxT(t), bundle, opts); err != nil {
		t.Fatal(err)
	}
	return bundle, img
}

// configOnePack builds the config of bundle with all its frames in one pack
// laid out in table order (what push does for a first push below the cut).
func configOnePack(bundle string) (*Config, error) {
	b, err := chunkstore.Open(bundle, chunkstore.Options{CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	fr := b.Format()
	tail, err := readTail(bundle, fr)
	if err != nil {
		return nil, err
	}
	g := make([]int, len(fr.Frames()))
	for i := range g {
		g[i] = i
	}
	pr, _, offs, err := buildPack(context.Background(), b, g)
	if err != nil {
		return nil, err
	}
	c := &Config{Format: ConfigFormat, ManifestDigest: fr.ManifestDigest().String(), BundleSize: fr.Size(),
		TailOffset: fr.Trailer().TOCOffset, Tail: tail, Packs: []PackRef{pr}}
	for _, o := range offs {
		c.Frames = append(c.Frames, [2]int64{0, o})
	}
	return c, nil
}
