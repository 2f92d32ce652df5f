package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/registry/registrytest"
)

// checkRunOCI (issue 10's last "done when"): the bundle pushed to a real
// registry on 127.0.0.1 runs lazily as oci://REF: the clone keeps the
// counter and blob, and the registry bytes it fetched (the fresh shared
// cache's size once the command has run: manifest, frame index, state,
// faulted frames and the working set prefetch) stay a small part of the
// bundle.
func checkRunOCI(t *testing.T, root, dir, bundle, blobSHA string, c0 int) {
	reg := registrytest.Start(t)
	ref := reg.Host + "/smolvm/run:v1"
	if out, errOut, code := smolvmIn(t, root, 5*time.Minute, "push", "--insecure", bundle, ref); code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, out, errOut)
	}
	cache := filepath.Join(dir, "oci-cache")
	t.Setenv("XDG_CACHE_HOME", cache) // the daemon inherits it from run
	start := time.Now()
	out, errOut, code := smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", "c-oci",
		"--ready-timeout", "150s", "--", "sh", "-c", cloneProbe)
	if code != 0 {
		t.Fatalf("run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, out, errOut)
	}
	wall := time.Since(start)
	p := parseProbe(t, out)
	if p.c1 < c0 || p.c2 <= p.c1 {
		t.Fatalf("counter after an oci:// restore: %d then %d (it was %d before the snapshot)", p.c1, p.c2, c0)
	}
	if p.blob != blobSHA {
		t.Fatalf("blob in guest RAM changed: %s, was %s", p.blob, blobSHA)
	}
	fetched := dirBytes(t, cache)
	stored := fileSize(t, bundle)
	if fetched == 0 {
		t.Fatalf("nothing in the shared cache %s after a lazy oci:// run", cache)
	}
	t.Logf("c-oci: %s", lastLine(errOut))
	t.Logf("figure: oci:// run: %.1f MiB fetched from the registry of %.1f MiB stored (%.1f%%), run wall %.2f s",
		float64(fetched)/(1<<20), float64(stored)/(1<<20), 100*float64(fetched)/float64(stored), wall.Seconds())
	if fetched > stored/2 {
		t.Fatalf("oci:// run fetched %d of the bundle's %d bytes: not lazy", fetched, stored)
	}
	// A second run finds the same daemon (keyed by reference and manifest
	// digest) and fetches nothing more for what the first one read.
	out, errOut, code = smolvmIn(t, root, 5*time.Minute, "run", "--insecure", "oci://"+ref, "--name", "c-oci2",
		"--ready-timeout", "150s", "--", "sh", "-c", cloneProbe)
	if code != 0 {
		t.Fatalf("second run oci://%s: exit %d\nstdout: %s\nstderr: %s", ref, code, out, errOut)
	}
	if p2 := parseProbe(t, out); p2.blob != blobSHA {
		t.Fatalf("second oci:// clone: blob %s, want %s", p2.blob, blobSHA)
	}
	t.Logf("c-oci2: %s", lastLine(errOut))
}

// dirBytes sums the sizes of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return n
}
