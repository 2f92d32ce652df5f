// Package rng is the virtio entropy device (virtio 1.x, section 5.4): one
// request queue whose writable buffers it fills from the host's randomness
// (crypto/rand, i.e. getrandom) on its own goroutine.
//
// It must not know about PCI or KVM.
package rng
