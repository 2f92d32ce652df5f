// Package registrytest runs a real OCI registry (Debian's docker-registry,
// the CNCF distribution registry) on 127.0.0.1 for tests. Not for
// production code.
package registrytest
