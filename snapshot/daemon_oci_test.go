package snapshot

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/registry/registrytest"
)

// TestEnsureDaemonOCI: an oci:// bundle's daemon is smolmount oci://REF
// (plain HTTP with Insecure), keyed by the reference and the pushed
// manifest digest: a second call shares it, a different digest for the same
// reference gets a daemon of its own, and the mount serves the pushed
// bytes.
func TestEnsureDaemonOCI(t *testing.T) {
	requireFUSE(t)
	bin := buildSmolmount(t)
	reg := registrytest.Start(t)
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the daemon's shared cache
	path, mem, digest := packMemory(t, 1<<20)
	ctx := context.Background()
	ref := reg.Host + "/snap/daemon:v1"
	if _, err := registry.Push(ctx, path, ref, registry.PushOptions{Remote: registry.Remote{Insecure: true, NoCredentials: true}}); err != nil {
		t.Fatal(err)
	}
	opt := DaemonOptions{Binary: bin, Insecure: true}

	d, err := EnsureDaemon(ctx, "oci://"+ref, digest, opt)
	if err != nil {
		t.Fatal(err)
	}
	stopDaemonCleanup(t, d.MountPoint)
	if !d.Started {
		t.Fatalf("first EnsureDaemon: %+v, want a started daemon", d)
	}
	// Read by this test process from a mount another process serves.
	got, err := os.ReadFile(filepath.Join(d.MountPoint, format.ArtifactMemory))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Fatal("memory read through the oci:// daemon's mount differs from the pushed image")
	}
	d2, err := EnsureDaemon(ctx, "oci://"+ref, digest, opt)
	if err != nil {
		t.Fatal(err)
	}
	if d2.Started || d2.PID != d.PID || d2.MountPoint != d.MountPoint {
		t.Fatalf("second EnsureDaemon: %+v, want the running daemon %+v", d2, d)
	}
	other := digest
	other[0] ^= 1
	if k1, k2 := daemonKey("oci://"+ref, digest), daemonKey("oci://"+ref, other); k1 == k2 {
		t.Fatalf("daemon key %s ignores the manifest digest", k1)
	}
	if daemonKey("oci://"+ref, digest) == daemonKey(filepath.Join(string(filepath.Separator), ref), digest) {
		t.Fatal("an oci:// reference and a file path share a daemon key")
	}
}
