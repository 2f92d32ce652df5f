// Package bench measures cold starts: boot, eager restore, lazy restore
// (userfaultfd, mmap), prefetch and QEMU, on the same guest in one run.
//
// It must not assert speed in tests; it reports ratios, counts and times.
package bench
