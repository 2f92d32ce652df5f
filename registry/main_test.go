package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
	"github.com/smolvm/smolvm/registry/registrytest"
)

// startRegistry runs a real registry for the test.
func startRegistry(t testing.TB) *registrytest.Registry { return registrytest.Start(t) }

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

// readRandomPages reads n random pages of want through r, checks them, and
// returns how many frames (and compressed bytes) of fr hold them, per im's
// extents.
func readRandomPages(t testing.TB, r io.ReaderAt, want []byte, im chunkstore.Image, fr *format.Reader, n int, seed uint64) (frames int, frameBytes int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	seen := map[int32]bool{}
	buf := make([]byte, format.PageSize)
	for range n {
		pg := rng.Int64N(int64(len(want)) / format.PageSize)
		if _, err := r.ReadAt(buf, pg*format.PageSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, want[pg*format.PageSize:(pg+1)*format.PageSize]) {
			t.Fatalf("page %d differs", pg)
		}
		if e, ok := im.Locate(pg); ok && !seen[e.Frame] {
			seen[e.Frame] = true
			frameBytes += fr.Frame(int(e.Frame)).Length
		}
	}
	return len(seen), frameBytes
}
