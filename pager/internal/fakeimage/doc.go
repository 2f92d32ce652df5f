// Package fakeimage is an in-memory chunkstore.Image for the pager's tests
// and benchmarks: page contents come from a deterministic generator that the
// serving and the faulting process both compute, so either can check bytes
// without sharing memory. Frames can be made to fail or stall.
package fakeimage
