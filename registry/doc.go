// Package registry moves bundles through an OCI registry: push uploads a
// bundle as an OCI artifact whose config is the bundle's TOC, manifest and
// trailer plus a frame index, and whose layers are packs (frames grouped
// deterministically, content-addressed); pull downloads, verifies and writes
// a self-contained bundle; Open serves a bundle lazily, fetching frames with
// HTTP range requests (one per frame, or one per run of the working set's
// frames that lie back to back in a pack) into a shared on-disk cache (a
// chunkstore.Store).
// See docs/REGISTRY.md.
//
// It speaks the distribution protocol through oras-go (credentials from the
// docker config and its helpers). It must not know about FUSE, userfaultfd
// or KVM, and never hands out a frame that failed verification: every frame
// is checked against its digest from the TOC before it is cached or used.
package registry
