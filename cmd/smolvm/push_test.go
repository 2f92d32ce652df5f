package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/internal/sampleimage"
	"github.com/smolvm/smolvm/registry"
	"github.com/smolvm/smolvm/registry/registrytest"
)

// smolvm push / pull against a real registry: the pulled file is the
// pushed one; a tampered pack makes pull fail naming it, writing nothing.
func TestPushPullCLI(t *testing.T) {
	reg := registrytest.Start(t)
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem.img")
	if err := sampleimage.WriteFile(mem, 8<<20, sampleimage.MemoryMix, 17); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(dir, "vm.smolmachine")
	if _, err := chunkstore.Pack(t.Context(), b, chunkstore.PackOptions{Inputs: []chunkstore.PackInput{{Name: "memory", Path: mem}}}); err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/cli/vm:1"
	out, err := runCLI(t, "push", "--insecure", "--json", "--pack-size", "1MiB", b, ref)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	var pr registry.PushResult
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.UploadedPacks < 2 {
		t.Fatalf("push --json: %v %+v\n%s", err, pr, out)
	}
	got := filepath.Join(dir, "pulled.smolmachine")
	out, err = runCLI(t, "pull", "--insecure", "--json=false", "--cache", filepath.Join(dir, "cache"), ref, "-o", got)
	if err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	a, _ := os.ReadFile(b)
	c, _ := os.ReadFile(got)
	if !bytes.Equal(a, c) {
		t.Fatal("pulled bundle differs from the pushed one")
	}
	if !strings.Contains(out, "pulled "+ref) {
		t.Fatalf("pull output: %s", out)
	}

	// Tamper with the first pack (its digest is the first layer's).
	var victim string
	for _, d := range layerDigests(t, reg.Root, "cli/vm") {
		victim = d
		break
	}
	p := reg.BlobPath(victim)
	blob, _ := os.ReadFile(p)
	blob[0] ^= 1
	os.WriteFile(p, blob, 0o644)
	bad := filepath.Join(dir, "bad.smolmachine")
	out, err = runCLI(t, "pull", "--insecure", "--cache", filepath.Join(dir, "cache2"), ref, "-o", bad)
	if err == nil || !strings.Contains(err.Error(), victim) {
		t.Fatalf("pull of a tampered pack: want an error naming %s, got %v\n%s", victim, err, out)
	}
	if _, serr := os.Stat(bad); !os.IsNotExist(serr) {
		t.Fatal("failed pull left a file")
	}
}

// layerDigests lists the pack blobs the registry links into repo.
func layerDigests(t *testing.T, root, repo string) []string {
	dir := filepath.Join(root, "docker/registry/v2/repositories", repo, "_layers/sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		h := e.Name()
		fi, err := os.Stat(filepath.Join(root, "docker/registry/v2/blobs/sha256", h[:2], h, "data"))
		// Packs are the blobs above 64 KiB here; the config is smaller.
		if err == nil && fi.Size() > 64<<10 {
			out = append(out, "sha256:"+h)
		}
	}
	return out
}
