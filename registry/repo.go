package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Scheme prefixes a reference given where a bundle path is expected
// (smolmount oci://REGISTRY/REPO:TAG).
const Scheme = "oci://"

// IsRef reports whether s names a registry artifact (starts with oci://).
func IsRef(s string) bool { return strings.HasPrefix(s, Scheme) }

// Remote says how to reach a registry.
type Remote struct {
	// Insecure speaks plain HTTP (a local registry); TLS otherwise.
	Insecure bool
	// NoCredentials skips the docker config and its credential helpers.
	NoCredentials bool
	// Client, when set, replaces the HTTP client (tests).
	Client *http.Client
}

// repo is an opened repository: oras-go's client for the protocol and a
// plain (non-retrying) authenticated client for our own range requests.
type repo struct {
	ref    registry.Reference
	r      *remote.Repository
	ranges *auth.Client
	plain  bool
}

// openRepo parses ref (REGISTRY/REPO[:TAG|@DIGEST], with or without oci://)
// and prepares clients for it. Nothing is sent yet.
func openRepo(ref string, rm Remote) (*repo, error) {
	ref = strings.TrimPrefix(ref, Scheme)
	pr, err := registry.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("registry: reference %q: %w", ref, err)
	}
	r, err := remote.NewRepository(pr.Registry + "/" + pr.Repository)
	if err != nil {
		return nil, fmt.Errorf("registry: reference %q: %w", ref, err)
	}
	var cred auth.CredentialFunc
	if !rm.NoCredentials {
		store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err == nil {
			cred = credentials.Credential(store)
		}
	}
	base := rm.Client
	if base == nil {
		base = &http.Client{Transport: newTransport()}
	}
	cache := auth.NewCache()
	r.Client = &auth.Client{Client: &http.Client{Transport: retry.NewTransport(base.Transport), Timeout: base.Timeout}, Cache: cache, Credential: cred}
	r.PlainHTTP = rm.Insecure
	return &repo{ref: pr, r: r, ranges: &auth.Client{Client: base, Cache: cache, Credential: cred}, plain: rm.Insecure}, nil
}

// newTransport bounds connecting and waiting for headers; bodies are bounded
// by the callers' contexts.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	t.MaxIdleConnsPerHost = 16
	return t
}

// Bounds on protocol operations, so a registry that stops answering mid-body
// fails the operation instead of hanging it.
const (
	metaTimeout   = 2 * time.Minute  // manifests, configs, tag lists, HEADs
	uploadTimeout = 10 * time.Minute // one blob upload or mount (a pack)
)

// bounded returns ctx limited to d.
func bounded(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// tag is the reference's tag or digest ("latest" when none).
func (p *repo) tag() string { return p.ref.ReferenceOrDefault() }

// name is REGISTRY/REPO:TAG for messages.
func (p *repo) name() string { return p.ref.Registry + "/" + p.ref.Repository + ":" + p.tag() }

// blobURL is the blob's URL in this repository.
func (p *repo) blobURL(d string) string {
	scheme := "https"
	if p.plain {
		scheme = "http"
	}
	return scheme + "://" + p.ref.Host() + "/v2/" + p.ref.Repository + "/blobs/" + d
}

// scoped adds the pull scope for this repository (for token auth).
func (p *repo) scoped(ctx context.Context) context.Context {
	return auth.AppendRepositoryScope(ctx, p.ref, auth.ActionPull)
}

// close drops idle connections.
func (p *repo) close() {
	if c := p.ranges.Client; c != nil {
		c.CloseIdleConnections()
	}
}

// notFound reports whether err is oras-go's or our not-found.
func notFound(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, errdef.ErrNotFound)
}
