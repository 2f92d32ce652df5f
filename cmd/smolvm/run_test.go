package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// TestRunRefuses: bad flags and bundles that cannot be restored fail
// before a guest starts, with an error naming the problem, and leave no
// state dir behind.
func TestRunRefuses(t *testing.T) {
	root := t.TempDir()
	t.Setenv("SMOLVM_RUN_DIR", root)
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(dir, "boot.smolmachine")
	if _, err := chunkstore.Pack(context.Background(), boot, chunkstore.PackOptions{
		Manifest: format.Manifest{Config: format.Config{Arch: "x86_64", VCPUs: 1, MemoryBytes: 1 << 20}},
		Inputs:   []chunkstore.PackInput{{Name: format.ArtifactMemory, Path: mem}},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		// First: cobra keeps the position of a "--" from an earlier
		// Execute in the same process.
		{"args without --", []string{"run", boot, "--paging", "uffd", "true"}, "put the command after --"},
		{"bad paging", []string{"run", boot, "--paging", "lazy", "--", "true"}, `paging "lazy"`},
		{"missing bundle", []string{"run", filepath.Join(dir, "nope.smolmachine"), "--paging", "uffd", "--", "true"}, "no such file"},
		{"no saved state", []string{"run", boot, "--paging", "eager", "--name", "r1", "--", "true"}, "no saved machine state"},
		{"not a bundle", []string{"run", mem, "--paging", "eager", "--name", "r2", "--", "true"}, "not a .smolmachine bundle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runCLI(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (output %q), want %q", err, out, tc.want)
			}
			if exitCode(err) == 0 {
				t.Fatal("exit status 0")
			}
		})
	}
	left, _ := filepath.Glob(filepath.Join(root, "r*"))
	if len(left) != 0 {
		t.Fatalf("state dirs left behind: %v", left)
	}
}
