package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// maxManifestSize bounds the OCI manifest (a few hundred packs).
const maxManifestSize = 4 << 20

// artifact is a fetched smolvm artifact: its OCI manifest and checked config.
type artifact struct {
	desc     ocispec.Descriptor
	manifest ocispec.Manifest
	cfg      *parsedConfig
}

// fetchArtifact resolves reference (a tag or digest in p) and fetches its
// manifest and config, both checked against their digests, the config
// checked as a bundle tail.
func (p *repo) fetchArtifact(ctx context.Context, reference string) (*artifact, error) {
	return p.fetchArtifactCached(ctx, reference, nil)
}

// fetchArtifactCached is fetchArtifact taking the config blob (the bundle's
// TOC: the largest thing a lazy start fetches but frames) from cache when it
// holds it, and keeping it there: the two processes of a lazy run (smolvm
// run and its bundle daemon) fetch it once.
func (p *repo) fetchArtifactCached(ctx context.Context, reference string, cache *Cache) (*artifact, error) {
	ctx, cancel := bounded(ctx, metaTimeout)
	defer cancel()
	desc, rc, err := p.r.FetchReference(ctx, reference)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("registry: %s/%s:%s: %w", p.ref.Registry, p.ref.Repository, reference, ErrNotFound)
		}
		return nil, fmt.Errorf("registry: %s/%s:%s: %w", p.ref.Registry, p.ref.Repository, reference, err)
	}
	defer rc.Close()
	if desc.Size > maxManifestSize {
		return nil, fmt.Errorf("registry: %s: manifest of %d bytes (at most %d)", p.name(), desc.Size, maxManifestSize)
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("registry: %s: manifest %s: %w", p.name(), desc.Digest, err)
	}
	a := &artifact{desc: desc}
	if err := json.Unmarshal(b, &a.manifest); err != nil {
		return nil, fmt.Errorf("registry: %s: manifest %s: %w: %v", p.name(), desc.Digest, ErrCorrupt, err)
	}
	m := &a.manifest
	if m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("registry: %s: %w (artifactType %q, config %q; want %s)", p.name(), ErrNotSmolvm, m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	if m.Config.Size <= 0 || m.Config.Size > maxConfigSize {
		return nil, fmt.Errorf("registry: %s: config %s of %d bytes (at most %d)", p.name(), m.Config.Digest, m.Config.Size, maxConfigSize)
	}
	cb, ok := cache.readBlob(m.Config.Digest.String(), m.Config.Size)
	if !ok {
		start := time.Now()
		cb, err = content.FetchAll(ctx, p.r.Blobs(), m.Config)
		logRequest(reqRecord{Time: start.UTC().Format(time.RFC3339Nano), Why: "config", Blob: m.Config.Digest.String(), Len: m.Config.Size, Ms: since(start)})
		if err != nil {
			return nil, fmt.Errorf("registry: %s: config blob %s: %w", p.name(), m.Config.Digest, err)
		}
		cache.putBlob(m.Config.Digest.String(), cb)
	}
	a.cfg, err = ParseConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: config blob %s: %w", p.name(), m.Config.Digest, err)
	}
	layers := make(map[string]bool, len(m.Layers))
	for _, l := range m.Layers {
		layers[l.Digest.String()] = true
	}
	for _, pk := range a.cfg.Packs {
		if !layers[pk.Digest] {
			return nil, fmt.Errorf("registry: %s: %w: config names pack %s that is not a layer of manifest %s", p.name(), ErrCorrupt, pk.Digest, desc.Digest)
		}
	}
	return a, nil
}
