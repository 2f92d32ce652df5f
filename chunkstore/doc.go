// Package chunkstore gets, checks and stores frames by digest: the bundle
// itself, a local directory store, and decorators (cache) over any store; and
// reads byte ranges of an artifact (memory, kernel, disk) through them, every
// frame verified before a byte of it is used.
//
// It must not know about FUSE, userfaultfd or KVM, and must never return a
// byte that failed verification.
package chunkstore
