// Package format reads and writes .smolmachine bundles (format v1, specified
// byte by byte in docs/FORMAT.md): header, frame data, table of contents,
// manifest and trailer; and the page/frame encoding with its digests.
//
// It must not fetch frames from anywhere but the bundle's own bytes, cache
// them, or know about FUSE, userfaultfd or KVM: those build on chunkstore.
package format
