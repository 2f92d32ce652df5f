package registry

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"golang.org/x/sys/unix"
)

// PullOptions tune Pull.
type PullOptions struct {
	Remote
	// CacheDir is the shared cache (default DefaultCacheDir()).
	CacheDir string
	Fetch    FetchOptions
	// Workers download packs in parallel (default 4).
	Workers int
	// ChunkSize is the size of one range request of a whole-pack download
	// (default 8 MiB): a retry or a resumed pull repeats at most this.
	ChunkSize int64
	// Progress, when set, is called with bytes fetched or found cached;
	// Total is called first with the bytes the pull needs.
	Progress func(n int64)
	Total    func(n int64)
}

// PullResult reports what Pull did.
type PullResult struct {
	Reference     string   `json:"reference"`
	Digest        string   `json:"digest"`
	BundleDigest  string   `json:"bundle_manifest"`
	BundleBytes   int64    `json:"bundle_bytes"`
	Packs         int      `json:"packs"`
	CachedPacks   int      `json:"cached_packs"`
	FetchedPacks  int      `json:"fetched_packs"`
	RangeFrames   int      `json:"range_frames"`
	Rebuilt       bool     `json:"rebuilt"` // a thin original, written self-contained
	Net           NetStats `json:"net"`
	Seconds       float64  `json:"seconds"`
	NetMBPerSec   float64  `json:"net_mb_per_s"`
	WriteMBPerSec float64  `json:"bundle_mb_per_s"`
}

// Pull downloads ref into a self-contained bundle at out. Every pack is
// checked against its digest and every frame against its page digests; the
// bundle appears at out (by rename) only when complete. Packs and frames
// land in the shared cache first, so an interrupted pull resumes (a pack
// from the bytes already downloaded).
func Pull(ctx context.Context, ref, out string, opts PullOptions) (*PullResult, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 8 << 20
	}
	p, err := openRepo(ref, opts.Remote)
	if err != nil {
		return nil, err
	}
	defer p.close()
	a, err := p.fetchArtifact(ctx, p.tag())
	if err != nil {
		return nil, err
	}
	cache, err := openCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	cfg := a.cfg
	fr := cfg.fr
	src := &frameSource{p: p, cfg: cfg, cache: cache, fetch: opts.Fetch}
	res := &PullResult{Reference: p.name(), Digest: a.desc.Digest.String(), BundleDigest: cfg.ManifestDigest, Packs: len(cfg.Packs)}

	// Whole packs for those mostly used; single frames from the rest.
	used := make(map[format.Digest]int64)
	for _, l := range cfg.locs {
		used[l.pack] += l.length
	}
	var whole []PackRef
	var total int64
	for i, pr := range cfg.Packs {
		d := cfg.packs[i]
		switch {
		case cache.hasPack(d, pr.Size):
			res.CachedPacks++
		case used[d]*2 >= pr.Size:
			whole = append(whole, pr)
			total += pr.Size
		default:
			total += used[d]
		}
	}
	if opts.Total != nil {
		opts.Total(total)
	}
	progress := func(n int64) {
		if opts.Progress != nil {
			opts.Progress(n)
		}
	}
	if err := p.downloadPacks(ctx, cache, whole, opts, &src.net, progress); err != nil {
		return nil, err
	}
	res.FetchedPacks = len(whole)

	f, err := chunkstore.CreateAtomic(out)
	if err != nil {
		return nil, fmt.Errorf("registry: pull: %w", err)
	}
	defer f.Abort()
	thin := false
	for i := range fr.Frames() {
		thin = thin || fr.Frame(i).External
	}
	var rangeFrames atomic.Int64
	frame := func(ctx context.Context, i int) ([]byte, error) {
		l := cfg.locs[i]
		cached := cache.hasPack(l.pack, l.size)
		raw, err := src.frame(ctx, i)
		if err == nil && !cached {
			rangeFrames.Add(1)
			progress(l.length)
		}
		return raw, err
	}
	if thin {
		err = writeRebuilt(ctx, f, fr, frame)
		res.Rebuilt = true
	} else {
		err = writeExact(ctx, f, cfg, runtime.GOMAXPROCS(0), frame)
	}
	res.RangeFrames = int(rangeFrames.Load())
	if err != nil {
		return nil, fmt.Errorf("registry: pull %s to %s: %w", p.name(), out, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("registry: pull: %w", err)
	}
	// The written file must open as the bundle the config describes.
	check, err := format.Open(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("registry: pull %s: the written bundle does not open: %w", p.name(), err)
	}
	if !thin && check.ManifestDigest().String() != cfg.ManifestDigest {
		return nil, fmt.Errorf("registry: pull %s: wrote bundle %s, want %s", p.name(), check.ManifestDigest(), cfg.ManifestDigest)
	}
	if err := f.Commit(); err != nil {
		return nil, fmt.Errorf("registry: pull: %w", err)
	}
	res.BundleBytes = st.Size()
	res.Net = src.net.snapshot()
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.NetMBPerSec = float64(res.Net.Bytes) / 1e6 / res.Seconds
		res.WriteMBPerSec = float64(res.BundleBytes) / 1e6 / res.Seconds
	}
	return res, nil
}

// writeExact rebuilds the original file: header, each frame at its TOC
// offset, then the tail. Frames are fetched and verified by workers in
// parallel (verification is the costly part), each written at its offset.
func writeExact(ctx context.Context, f *chunkstore.AtomicFile, cfg *parsedConfig, workers int, frame func(context.Context, int) ([]byte, error)) error {
	fr := cfg.fr
	if _, err := f.WriteAt(header(fr.Trailer()), 0); err != nil {
		return err
	}
	err := forEach(ctx, len(fr.Frames()), workers, func(ctx context.Context, i int) error {
		raw, err := frame(ctx, i)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(raw, fr.Frame(i).Offset)
		return err
	})
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(cfg.Tail, cfg.TailOffset); err != nil {
		return err
	}
	return f.Truncate(cfg.BundleSize)
}

// writeRebuilt writes a thin original as a self-contained bundle: same
// frames, config and extents; a new TOC (all frames internal), so a new
// manifest digest.
func writeRebuilt(ctx context.Context, f *chunkstore.AtomicFile, fr *format.Reader, frame func(context.Context, int) ([]byte, error)) error {
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := format.NewWriter(bw)
	if err != nil {
		return err
	}
	for i := range fr.Frames() {
		raw, err := frame(ctx, i)
		if err != nil {
			return err
		}
		if _, err := w.AddFrame(raw, fr.Frame(i).PageDigests); err != nil {
			return err
		}
	}
	m := *fr.Manifest()
	m.TOC = ""
	if _, err := w.Finish(&m); err != nil {
		return err
	}
	return bw.Flush()
}

// downloadPacks fetches whole packs into the cache, opts.Workers at a time.
func (p *repo) downloadPacks(ctx context.Context, cache *Cache, packs []PackRef, opts PullOptions, ctr *netCounters, progress func(int64)) error {
	return forEach(ctx, len(packs), opts.Workers, func(ctx context.Context, i int) error {
		return p.downloadPack(ctx, cache, packs[i], opts, ctr, progress)
	})
}

// downloadPack fetches one pack into the cache by range requests of
// ChunkSize, appending to a partial file (locked against a concurrent pull
// of the same pack) and resuming from its length; the pack is published
// only when its SHA-256 matches, and a mismatch deletes the partial file.
func (p *repo) downloadPack(ctx context.Context, cache *Cache, pr PackRef, opts PullOptions, ctr *netCounters, progress func(int64)) error {
	d, err := format.ParseDigest(pr.Digest)
	if err != nil {
		return err
	}
	part := cache.partialPath(d)
	pf, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("registry: cache: %w", err)
	}
	defer pf.Close()
	if err := lockFile(ctx, pf); err != nil {
		return fmt.Errorf("registry: cache: locking %s: %w", part, err)
	}
	if cache.hasPack(d, pr.Size) { // a concurrent pull finished it
		progress(pr.Size)
		return nil
	}
	h, have, err := hashFile(part)
	if err != nil {
		return fmt.Errorf("registry: cache: %w", err)
	}
	if have > pr.Size {
		if err := pf.Truncate(0); err != nil {
			return fmt.Errorf("registry: cache: %w", err)
		}
		h, have = sha256.New(), 0
	}
	progress(have)
	err = p.fetchPackTo(ctx, pf, pr, have, h, opts, ctr, progress)
	if errors.Is(err, ErrCorrupt) && have > 0 {
		// The bytes kept from before may be the bad ones: fetch the
		// whole pack once more before blaming the registry.
		if err := pf.Truncate(0); err != nil {
			return fmt.Errorf("registry: cache: %w", err)
		}
		err = p.fetchPackTo(ctx, pf, pr, 0, sha256.New(), opts, ctr, progress)
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			os.Remove(part)
		}
		return err
	}
	if err := os.Rename(part, cache.packPath(d)); err != nil {
		return fmt.Errorf("registry: cache: %w", err)
	}
	return nil
}

// fetchPackTo appends pack bytes [from, size) to pf, hashing them into h
// (which holds bytes [0, from)), and checks the digest.
func (p *repo) fetchPackTo(ctx context.Context, pf *os.File, pr PackRef, from int64, h hash.Hash, opts PullOptions, ctr *netCounters, progress func(int64)) error {
	for off := from; off < pr.Size; {
		n := min(opts.ChunkSize, pr.Size-off)
		b, err := p.fetchRange(ctx, pr.Digest, off, n, opts.Fetch, ctr, reqRecord{Why: "pack"})
		if err != nil {
			return fmt.Errorf("registry: pack %s: %w", pr.Digest, err)
		}
		if _, err := pf.Write(b); err != nil {
			return fmt.Errorf("registry: cache: %s: %w", pf.Name(), err)
		}
		h.Write(b)
		off += n
		progress(n)
	}
	if got := format.Digest(h.Sum(nil)); got.String() != pr.Digest {
		return fmt.Errorf("registry: %s: pack %s: the registry's %d bytes hash to %s (tampered or damaged blob; nothing kept): %w", p.name(), pr.Digest, pr.Size, got, ErrCorrupt)
	}
	return nil
}

// lockFile takes an exclusive flock on f, polling so ctx can end the wait.
func lockFile(ctx context.Context, f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err != unix.EWOULDBLOCK {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
