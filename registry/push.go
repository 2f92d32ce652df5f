package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// DefaultPackSize is where push cuts packs: big enough that a registry sees
// few blobs, small enough that a second push re-uploads little.
const DefaultPackSize = 32 << 20

// maxBases bounds the earlier artifacts push reads to find frames it can
// reuse (the repository's tags, newest listing order).
const maxBases = 64

// PushOptions tune Push.
type PushOptions struct {
	Remote
	// StoreDir holds a thin bundle's external frames.
	StoreDir string
	// PackSize is the pack cut size in bytes (default DefaultPackSize).
	PackSize int64
	// Bases are references (same registry, any repository) whose packs the
	// push may reuse, besides the target repository's own tags. Packs from
	// another repository are mounted (cross-repository blob mount).
	Bases []string
	// Fetch bounds requests (reading bases).
	Fetch FetchOptions
	// Progress, when set, is called with bytes of new packs handled
	// (uploaded or found present); Total is set first.
	Progress func(n int64)
	Total    func(n int64)
}

// PushResult reports what Push did.
type PushResult struct {
	Reference      string  `json:"reference"`
	Digest         string  `json:"digest"`          // the OCI manifest's digest
	BundleDigest   string  `json:"bundle_manifest"` // the bundle's manifest digest
	Frames         int     `json:"frames"`
	ReusedFrames   int     `json:"reused_frames"`
	Packs          int     `json:"packs"`
	NewPacks       int     `json:"new_packs"`
	UploadedPacks  int     `json:"uploaded_packs"`
	UploadedBytes  int64   `json:"uploaded_bytes"`
	MountedPacks   int     `json:"mounted_packs"`
	ConfigBytes    int64   `json:"config_bytes"`
	Seconds        float64 `json:"seconds"`
	UploadMBPerSec float64 `json:"upload_mb_per_s"`
}

// known says where an already-pushed frame lives.
type known struct {
	pack   PackRef
	offset int64
	length int64
	from   *repo // repository holding the pack
}

// Push uploads the bundle at path to ref (REGISTRY/REPO:TAG).
func Push(ctx context.Context, path, ref string, opts PushOptions) (*PushResult, error) {
	start := time.Now()
	if opts.PackSize <= 0 {
		opts.PackSize = DefaultPackSize
	}
	b, err := chunkstore.Open(path, chunkstore.Options{StoreDir: opts.StoreDir, CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	fr := b.Format()
	tail, err := readTail(path, fr)
	if err != nil {
		return nil, err
	}
	p, err := openRepo(ref, opts.Remote)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if p.ref.Reference != "" && p.ref.ValidateReferenceAsTag() != nil {
		return nil, fmt.Errorf("registry: push %s: give a tag (REGISTRY/REPO:TAG), not a digest", ref)
	}
	res := &PushResult{Reference: p.name(), BundleDigest: fr.ManifestDigest().String(), Frames: len(fr.Frames())}

	have, bases, err := p.knownFrames(ctx, opts)
	for _, bp := range bases {
		defer bp.close()
	}
	if err != nil {
		return nil, err
	}

	// Place every frame: in a pack already pushed (same digest and
	// length: the pulled bundle must be bit-identical, so a frame that
	// was compressed differently is not reused), or in a new pack cut in
	// table order.
	cfg := Config{Format: ConfigFormat, ManifestDigest: res.BundleDigest, BundleSize: fr.Size(),
		TailOffset: fr.Trailer().TOCOffset, Tail: tail, Frames: make([][2]int64, len(fr.Frames()))}
	packIndex := map[string]int{}
	packFrom := map[string]*repo{}
	addPack := func(pr PackRef, from *repo) int64 {
		if i, ok := packIndex[pr.Digest]; ok {
			return int64(i)
		}
		packIndex[pr.Digest] = len(cfg.Packs)
		packFrom[pr.Digest] = from
		cfg.Packs = append(cfg.Packs, pr)
		return int64(len(cfg.Packs) - 1)
	}
	var groups [][]int // new packs: frame indexes
	var cur []int
	var curSize, newBytes int64
	for i := range fr.Frames() {
		f := fr.Frame(i)
		if k, ok := have[f.Digest]; ok && k.length == f.Length {
			res.ReusedFrames++
			cfg.Frames[i] = [2]int64{addPack(k.pack, k.from), k.offset}
			continue
		}
		cur = append(cur, i)
		curSize += f.Length
		newBytes += f.Length
		if curSize >= opts.PackSize {
			groups, cur, curSize = append(groups, cur), nil, 0
		}
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	if opts.Total != nil {
		opts.Total(newBytes)
	}

	// Build, digest and upload the new packs, one at a time (a pack is
	// held in memory: at most PackSize plus one frame).
	for _, g := range groups {
		pr, buf, offs, err := buildPack(ctx, b, g)
		if err != nil {
			return nil, err
		}
		uploaded, err := p.pushBlob(ctx, PackMediaType, pr, buf)
		if err != nil {
			return nil, err
		}
		res.NewPacks++
		if uploaded {
			res.UploadedPacks++
			res.UploadedBytes += pr.Size
		}
		pi := addPack(pr, p)
		for j, i := range g {
			cfg.Frames[i] = [2]int64{pi, offs[j]}
		}
		if opts.Progress != nil {
			opts.Progress(pr.Size)
		}
	}
	// Packs of other repositories must be in this one for the manifest.
	for _, pr := range cfg.Packs {
		from := packFrom[pr.Digest]
		if from == nil || from.ref.Repository == p.ref.Repository {
			continue
		}
		desc := ocispec.Descriptor{MediaType: PackMediaType, Digest: digest.Digest(pr.Digest), Size: pr.Size}
		if ok, err := p.exists(ctx, desc); err == nil && ok {
			continue
		}
		mctx, cancel := bounded(ctx, uploadTimeout)
		err := p.r.Mount(mctx, desc, from.ref.Repository, nil)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("registry: %s: mounting pack %s from %s: %w", p.name(), pr.Digest, from.ref.Repository, err)
		}
		res.MountedPacks++
	}
	res.Packs = len(cfg.Packs)

	cb, err := json.Marshal(&cfg)
	if err != nil {
		return nil, fmt.Errorf("registry: encoding config: %w", err)
	}
	if _, err := ParseConfig(cb); err != nil { // never publish what pull would refuse
		return nil, fmt.Errorf("registry: push %s: built an invalid config: %w", path, err)
	}
	cdesc := PackRef{Digest: digestOf(cb).String(), Size: int64(len(cb))}
	if _, err := p.pushBlob(ctx, ConfigMediaType, cdesc, cb); err != nil {
		return nil, err
	}
	res.ConfigBytes = cdesc.Size
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.Digest(cdesc.Digest), Size: cdesc.Size},
		Annotations:  map[string]string{"org.smolvm.bundle.manifest": res.BundleDigest},
	}
	for _, pr := range cfg.Packs {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: PackMediaType, Digest: digest.Digest(pr.Digest), Size: pr.Size})
	}
	mb, err := json.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("registry: encoding manifest: %w", err)
	}
	mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)), ArtifactType: ArtifactType}
	mctx, cancel := bounded(ctx, metaTimeout)
	defer cancel()
	if err := p.r.PushReference(mctx, mdesc, bytes.NewReader(mb), p.tag()); err != nil {
		return nil, fmt.Errorf("registry: %s: pushing manifest: %w", p.name(), err)
	}
	res.Digest = mdesc.Digest.String()
	res.Seconds = time.Since(start).Seconds()
	if res.Seconds > 0 {
		res.UploadMBPerSec = float64(res.UploadedBytes) / 1e6 / res.Seconds
	}
	return res, nil
}

// knownFrames maps frames already in the registry (in the target's tags and
// the given bases) to their packs. Tags that are not smolvm artifacts are
// skipped; a base that cannot be read is an error.
func (p *repo) knownFrames(ctx context.Context, opts PushOptions) (have map[format.Digest]known, bases []*repo, err error) {
	have = map[format.Digest]known{}
	add := func(from *repo, a *artifact) {
		for i, f := range a.cfg.fr.Frames() {
			if _, ok := have[f.Digest]; ok {
				continue
			}
			l := a.cfg.locs[i]
			have[f.Digest] = known{pack: PackRef{Digest: l.pack.String(), Size: l.size}, offset: l.offset, length: l.length, from: from}
		}
	}
	var tags []string
	tctx, cancel := bounded(ctx, metaTimeout)
	defer cancel()
	err = p.r.Tags(tctx, "", func(ts []string) error {
		tags = append(tags, ts...)
		if len(tags) >= maxBases {
			return errStopTags
		}
		return nil
	})
	if err != nil && err != errStopTags && !notFound(err) {
		// A registry that cannot list tags only costs dedup.
		tags = nil
	}
	for _, t := range tags {
		if a, err := p.fetchArtifact(ctx, t); err == nil {
			add(p, a)
		}
	}
	for _, base := range opts.Bases {
		bp, err := openRepo(base, opts.Remote)
		if err != nil {
			return nil, bases, err
		}
		bases = append(bases, bp)
		if bp.ref.Registry != p.ref.Registry {
			return nil, bases, fmt.Errorf("registry: base %s is in another registry than %s", base, p.name())
		}
		a, err := bp.fetchArtifact(ctx, bp.tag())
		if err != nil {
			return nil, bases, fmt.Errorf("registry: base %s: %w", base, err)
		}
		add(bp, a)
	}
	return have, bases, nil
}

var errStopTags = fmt.Errorf("enough tags")

// buildPack reads frames g (table order) into one pack, reading and
// verifying them on all cores: a damaged local frame must not become a blob
// others pull.
func buildPack(ctx context.Context, b *chunkstore.Bundle, g []int) (PackRef, []byte, []int64, error) {
	fr := b.Format()
	raws := make([][]byte, len(g))
	err := forEach(ctx, len(g), runtime.GOMAXPROCS(0), func(ctx context.Context, j int) error {
		f := fr.Frame(g[j])
		raw, err := b.Source().Get(ctx, f.Digest)
		if err != nil {
			return fmt.Errorf("registry: frame %d (%s): %w", g[j], f.Digest, err)
		}
		if int64(len(raw)) != f.Length {
			return fmt.Errorf("registry: frame %d (%s): %d bytes, the TOC says %d", g[j], f.Digest, len(raw), f.Length)
		}
		if _, err := format.DecodeFrame(f, raw, nil); err != nil {
			return fmt.Errorf("registry: frame %d: %w", g[j], err)
		}
		raws[j] = raw
		return nil
	})
	if err != nil {
		return PackRef{}, nil, nil, err
	}
	var size int64
	for _, raw := range raws {
		size += int64(len(raw))
	}
	buf := make([]byte, 0, size)
	offs := make([]int64, len(g))
	for j, raw := range raws {
		offs[j] = int64(len(buf))
		buf = append(buf, raw...)
	}
	return PackRef{Digest: digestOf(buf).String(), Size: int64(len(buf))}, buf, offs, nil
}

func digestOf(b []byte) format.Digest { return format.Digest(sha256.Sum256(b)) }

// pushBlob uploads b unless the repository has it (HEAD first); uploaded
// reports whether bytes were sent.
func (p *repo) pushBlob(ctx context.Context, mediaType string, pr PackRef, b []byte) (uploaded bool, err error) {
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest(pr.Digest), Size: pr.Size}
	ok, err := p.exists(ctx, desc)
	if err != nil {
		return false, fmt.Errorf("registry: %s: HEAD blob %s: %w", p.name(), pr.Digest, err)
	}
	if ok {
		return false, nil
	}
	uctx, cancel := bounded(ctx, uploadTimeout)
	defer cancel()
	if err := p.r.Push(uctx, desc, bytes.NewReader(b)); err != nil {
		return false, fmt.Errorf("registry: %s: uploading blob %s (%d bytes): %w", p.name(), pr.Digest, pr.Size, err)
	}
	return true, nil
}

// exists HEADs a blob.
func (p *repo) exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	ctx, cancel := bounded(ctx, metaTimeout)
	defer cancel()
	return p.r.Exists(ctx, desc)
}

// readTail reads the bundle's bytes from its TOC to its end.
func readTail(path string, fr *format.Reader) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	defer f.Close()
	off := fr.Trailer().TOCOffset
	b := make([]byte, fr.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("registry: %s: reading TOC, manifest and trailer at %d: %w", path, off, err)
	}
	return b, nil
}
