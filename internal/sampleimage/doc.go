// Package sampleimage generates deterministic test images that look like
// guest memory: runs of zero pages, random (incompressible) pages and
// text-like pages, and mutates images by rewriting random pages, for tests,
// benchmarks and the demo.
//
// It must not be imported by production code.
package sampleimage
