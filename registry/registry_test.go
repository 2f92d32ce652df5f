package registry

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Push then pull gives the same file, byte for byte; a second pull is served
// by the cache; a second push of the same bundle uploads nothing.
func TestPushPullIdentical(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 16<<20, 1, "")
	ref := reg.Host + "/smolvm/test:v1"
	pr, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local, PackSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push: %+v", pr)
	if pr.UploadedPacks < 2 || pr.UploadedPacks != pr.Packs || pr.ReusedFrames != 0 {
		t.Fatalf("first push: want several packs all uploaded, got %+v", pr)
	}
	cache := filepath.Join(dir, "cache")
	for _, tc := range []struct {
		name   string
		cached bool
	}{{"cold", false}, {"warm", true}} {
		out := filepath.Join(dir, "pulled-"+tc.name+".smolmachine")
		res, err := Pull(ctxT(t), "oci://"+ref, out, PullOptions{Remote: local, CacheDir: cache, ChunkSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pull %s: %+v", tc.name, res)
		if !bytes.Equal(mustRead(t, out), mustRead(t, bundle)) {
			t.Fatalf("pull %s: %s differs from %s", tc.name, out, bundle)
		}
		if tc.cached && (res.CachedPacks != res.Packs || res.Net.Bytes != 0) {
			t.Fatalf("warm pull fetched again: %+v", res)
		}
		if !tc.cached && (res.FetchedPacks != res.Packs || res.Net.Bytes < pr.UploadedBytes) {
			t.Fatalf("cold pull: %+v", res)
		}
	}
	byDigest := filepath.Join(dir, "by-digest.smolmachine")
	if _, err := Pull(ctxT(t), reg.Host+"/smolvm/test@"+pr.Digest, byDigest, PullOptions{Remote: local, CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustRead(t, byDigest), mustRead(t, bundle)) {
		t.Fatal("pull by digest differs")
	}
	if _, err := Push(ctxT(t), bundle, reg.Host+"/smolvm/test@"+pr.Digest, PushOptions{Remote: local}); err == nil || !strings.Contains(err.Error(), "tag") {
		t.Fatalf("push to a digest reference: want an error asking for a tag, got %v", err)
	}
	again, err := Push(ctxT(t), bundle, reg.Host+"/smolvm/test:v1-again", PushOptions{Remote: local, PackSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if again.UploadedBytes != 0 || again.ReusedFrames != again.Frames {
		t.Fatalf("re-push uploaded %d bytes, reused %d of %d frames", again.UploadedBytes, again.ReusedFrames, again.Frames)
	}
}

// A second bundle with 5% of its data pages changed (packed with the first
// as parent, as a snapshot of a running base is) adds at most 10% to the
// registry's storage, and pulls back identical.
func TestPushDedupFivePercent(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	b1, img := makeBundle(t, dir, 32<<20, 3, "")
	next := filepath.Join(dir, "mem-4.img")
	if err := os.WriteFile(next, mustRead(t, img), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sampleimage.Mutate(next, 0.05, 4, true); err != nil {
		t.Fatal(err)
	}
	b2, _ := makeBundle(t, dir, 32<<20, 4, b1)

	if _, err := Push(ctxT(t), b1, reg.Host+"/vm:base", PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	before := reg.StorageBytes(t)
	r2, err := Push(ctxT(t), b2, reg.Host+"/vm:next", PushOptions{Remote: local})
	if err != nil {
		t.Fatal(err)
	}
	added := reg.StorageBytes(t) - before
	t.Logf("base: %d bytes in the registry; second push +%d bytes (%.1f%%): %+v", before, added, 100*float64(added)/float64(before), r2)
	if added > before/10 {
		t.Fatalf("second push added %d bytes to %d: more than 10%%", added, before)
	}
	if r2.ReusedFrames == 0 || r2.NewPacks != 1 {
		t.Fatalf("second push reused nothing: %+v", r2)
	}
	out := filepath.Join(dir, "next.smolmachine")
	if _, err := Pull(ctxT(t), reg.Host+"/vm:next", out, PullOptions{Remote: local, CacheDir: filepath.Join(dir, "cache")}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustRead(t, out), mustRead(t, b2)) {
		t.Fatal("pulled second bundle differs")
	}
}

// A pack changed in the registry's storage makes a fresh pull fail naming
// the blob, leaving no output and no partial download; a lazy read of a
// frame in it fails naming the frame.
func TestTamperedBlobRefused(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 8<<20, 5, "")
	ref := reg.Host + "/vm:t"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local, PackSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c0")})
	if err != nil {
		t.Fatal(err)
	}
	defer lz.Close()
	a, err := lz.src.p.fetchArtifact(ctxT(t), "t")
	if err != nil {
		t.Fatal(err)
	}
	victim := a.cfg.Packs[0].Digest
	p := reg.BlobPath(victim)
	b := mustRead(t, p)
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}

	cache := filepath.Join(dir, "cache")
	out := filepath.Join(dir, "out.smolmachine")
	_, err = Pull(ctxT(t), ref, out, PullOptions{Remote: local, CacheDir: cache})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), victim) {
		t.Fatalf("pull of a tampered pack: want ErrCorrupt naming %s, got %v", victim, err)
	}
	t.Logf("pull: %v", err)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("%s exists after a failed pull", out)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "blobs/sha256/*"))
	hidden, _ := filepath.Glob(filepath.Join(cache, "blobs/sha256/.*"))
	for _, f := range append(left, hidden...) {
		if strings.Contains(f, victim[7:]) {
			t.Fatalf("cache kept %s of the tampered pack", f)
		}
	}
	// Lazily: the first frame of the damaged pack fails, naming it.
	for i, l := range a.cfg.locs {
		if l.pack.String() != victim || l.offset+l.length <= int64(len(b)/2) {
			continue
		}
		_, err := lz.Frame(ctxT(t), i)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), a.cfg.fr.Frame(i).Digest.String()) {
			t.Fatalf("lazy frame %d in the tampered pack: want ErrCorrupt naming it, got %v", i, err)
		}
		t.Logf("lazy: %v", err)
		break
	}
}

// An interrupted pull resumes: a pack's partial download is continued, not
// restarted; a partial file with wrong bytes is detected and fetched anew.
func TestPullResumes(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 8<<20, 6, "")
	ref := reg.Host + "/vm:r"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local, PackSize: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "c0")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := lz.src.cfg
	lz.Close()
	if len(cfg.Packs) != 1 {
		t.Fatalf("want one pack, got %d", len(cfg.Packs))
	}
	pack := mustRead(t, reg.BlobPath(cfg.Packs[0].Digest))
	half := int64(len(pack) / 2)
	for _, tc := range []struct {
		name    string
		partial []byte
		maxNet  int64
	}{
		{"good half", pack[:half], int64(len(pack)) - half},
		{"bad half", append([]byte{pack[0] ^ 1}, pack[1:half]...), 2 * int64(len(pack))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			c, _ := openCache(cache)
			if err := os.WriteFile(c.partialPath(cfg.packs[0]), tc.partial, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.smolmachine")
			res, err := Pull(ctxT(t), ref, out, PullOptions{Remote: local, CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			if res.Net.Bytes > tc.maxNet {
				t.Fatalf("fetched %d bytes, want at most %d", res.Net.Bytes, tc.maxNet)
			}
			if !bytes.Equal(mustRead(t, out), mustRead(t, bundle)) {
				t.Fatal("resumed pull differs")
			}
		})
	}
}

// A lazy bundle fetches only the frames reads touch (range requests of
// exactly those frames), and reads the right bytes.
func TestLazyFetchesTouchedFrames(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, img := makeBundle(t, dir, 32<<20, 7, "")
	ref := reg.Host + "/vm:lazy"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	want := mustRead(t, img)
	lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer lz.Close()
	im, err := lz.Image("memory")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	frames, frameBytes := readRandomPages(t, im, want, im, lz.Format(), n, 7)
	ns := lz.NetStats()
	t.Logf("%d random pages: %d frames touched, %d range requests, %d bytes fetched (bundle %d bytes)", n, frames, ns.Requests, ns.Bytes, lz.Format().Size())
	if ns.Requests != int64(frames) || ns.Bytes != frameBytes {
		t.Fatalf("fetched %d requests / %d bytes, the touched frames are %d / %d bytes", ns.Requests, ns.Bytes, frames, frameBytes)
	}
}

// A push to another repository with --base reuses the base's packs by
// cross-repository mount (nothing uploaded twice); a thin bundle (frames in
// a store) pushes and pulls back as a self-contained bundle with the same
// images.
func TestPushBaseMountAndThin(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	b1, img := makeBundle(t, dir, 8<<20, 12, "")
	if _, err := Push(ctxT(t), b1, reg.Host+"/team-a/vm:1", PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	r, err := Push(ctxT(t), b1, reg.Host+"/team-b/vm:1", PushOptions{Remote: local, Bases: []string{reg.Host + "/team-a/vm:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.UploadedBytes != 0 || r.MountedPacks != r.Packs || r.ReusedFrames != r.Frames {
		t.Fatalf("push with a base in another repository: %+v", r)
	}
	out := filepath.Join(dir, "b.smolmachine")
	if _, err := Pull(ctxT(t), reg.Host+"/team-b/vm:1", out, PullOptions{Remote: local, CacheDir: filepath.Join(dir, "c1")}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustRead(t, out), mustRead(t, b1)) {
		t.Fatal("pull from the mounting repository differs")
	}

	// Thin: pack into a store, push with the store.
	store, err := chunkstore.OpenDir(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	thin := filepath.Join(dir, "thin.smolmachine")
	if _, err := chunkstore.Pack(ctxT(t), thin, chunkstore.PackOptions{Store: store, Inputs: []chunkstore.PackInput{{Name: "memory", Path: img}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Push(ctxT(t), thin, reg.Host+"/thin:1", PushOptions{Remote: local}); err == nil {
		t.Fatal("pushing a thin bundle without its store succeeded")
	}
	if _, err := Push(ctxT(t), thin, reg.Host+"/thin:1", PushOptions{Remote: local, StoreDir: store.Dir()}); err != nil {
		t.Fatal(err)
	}
	fat := filepath.Join(dir, "fat.smolmachine")
	res, err := Pull(ctxT(t), reg.Host+"/thin:1", fat, PullOptions{Remote: local, CacheDir: filepath.Join(dir, "c2")})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Rebuilt {
		t.Fatalf("thin original not rebuilt: %+v", res)
	}
	b, err := chunkstore.Open(fat, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if st := b.Format().Stats(); st.ExternalFrames != 0 {
		t.Fatalf("pulled bundle has %d external frames", st.ExternalFrames)
	}
	im, _ := b.Image("memory")
	got := make([]byte, im.Size())
	if _, err := im.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mustRead(t, img)) {
		t.Fatal("thin bundle pulled back: memory differs")
	}
}

// A bundle that uses a few frames of a big earlier pack pulls those frames
// by range request instead of downloading the whole pack.
func TestPullRangeFramesOfSharedPack(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bigBundle, bigImg := makeBundle(t, dir, 16<<20, 13, "")
	if _, err := Push(ctxT(t), bigBundle, reg.Host+"/vm:big", PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	// The small image is the big one's first MiB plus new pages.
	small := filepath.Join(dir, "mem-14.img")
	b := mustRead(t, bigImg)[:2<<20]
	copy(b[1<<20:], bytes.Repeat([]byte("new page data "), (1<<20)/14))
	if err := os.WriteFile(small, b, 0o644); err != nil {
		t.Fatal(err)
	}
	smallBundle, _ := makeBundle(t, dir, 2<<20, 14, bigBundle)
	r, err := Push(ctxT(t), smallBundle, reg.Host+"/vm:small", PushOptions{Remote: local})
	if err != nil {
		t.Fatal(err)
	}
	if r.ReusedFrames == 0 {
		t.Fatalf("small bundle reused nothing: %+v", r)
	}
	out := filepath.Join(dir, "small.smolmachine")
	res, err := Pull(ctxT(t), reg.Host+"/vm:small", out, PullOptions{Remote: local, CacheDir: filepath.Join(dir, "c")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push %+v\npull %+v", r, res)
	if res.RangeFrames != r.ReusedFrames || res.FetchedPacks != 1 {
		t.Fatalf("want the %d reused frames by range and the new pack whole: %+v", r.ReusedFrames, res)
	}
	if !bytes.Equal(mustRead(t, out), mustRead(t, smallBundle)) {
		t.Fatal("pulled small bundle differs")
	}
}

// A cache file damaged after it was checked (a whole pack, a single frame)
// is never used: the frame is fetched again and the file removed.
func TestDamagedCacheRefetched(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, img := makeBundle(t, dir, 4<<20, 15, "")
	ref := reg.Host + "/vm:d"
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	want := mustRead(t, img)
	for _, kind := range []string{"pack", "frame"} {
		t.Run(kind, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			lz, err := Open(ctxT(t), ref, LazyOptions{Remote: local, CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer lz.Close()
			c := lz.src.cache
			im, _ := lz.Image("memory")
			e := im.Extents()[0]
			loc := lz.src.cfg.locs[e.Frame]
			var victim string
			if kind == "pack" {
				if _, err := Pull(ctxT(t), ref, filepath.Join(t.TempDir(), "b"), PullOptions{Remote: local, CacheDir: cache}); err != nil {
					t.Fatal(err)
				}
				victim = c.packPath(loc.pack)
				b := mustRead(t, victim)
				b[loc.offset+loc.length/2] ^= 0x10
				os.WriteFile(victim, b, 0o644)
			} else {
				if _, err := lz.src.frame(ctxT(t), int(e.Frame)); err != nil {
					t.Fatal(err)
				}
				victim = c.framePath(lz.Format().Frame(int(e.Frame)).Digest)
				b := mustRead(t, victim)
				b[len(b)/2] ^= 0x10
				os.WriteFile(victim, b, 0o644)
			}
			before := lz.NetStats().Requests
			buf := make([]byte, int64(e.Count)*format.PageSize)
			if _, err := im.ReadAt(buf, e.Page*format.PageSize); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, want[e.Page*format.PageSize:e.End()*format.PageSize]) {
				t.Fatal("read through a damaged cache differs")
			}
			if lz.NetStats().Requests != before+1 {
				t.Fatalf("want one fetch past the damaged %s, got %d", kind, lz.NetStats().Requests-before)
			}
			if kind == "pack" {
				if _, err := os.Stat(victim); !os.IsNotExist(err) {
					t.Fatalf("damaged pack %s kept", victim)
				}
			}
		})
	}
}

// TLS is the default: without Insecure, a plain-HTTP registry is refused.
func TestTLSByDefault(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 1<<20, 16, "")
	tlsOnly := Remote{NoCredentials: true}
	ref := reg.Host + "/vm:tls"
	_, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: tlsOnly})
	if err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Fatalf("push over TLS to a plain-HTTP registry: %v", err)
	}
	if _, err := Push(ctxT(t), bundle, ref, PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctxT(t), ref, filepath.Join(dir, "o"), PullOptions{Remote: tlsOnly, CacheDir: filepath.Join(dir, "c")}); err == nil || !strings.Contains(err.Error(), "HTTPS") {
		t.Fatalf("pull over TLS from a plain-HTTP registry: %v", err)
	}
	if _, err := Open(ctxT(t), ref, LazyOptions{Remote: tlsOnly, CacheDir: filepath.Join(dir, "c")}); err == nil {
		t.Fatal("lazy open over TLS from a plain-HTTP registry succeeded")
	}
}
