package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/internal/sampleimage"
)

// runCLI runs the smolvm root command in-process with args. Flag values
// persist between calls (cobra keeps them), so tests reset them explicitly.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetErr(&out)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	return out.String(), err
}

func TestBundleCLI(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem.img")
	if err := sampleimage.WriteFile(mem, 4<<20+100, sampleimage.MemoryMix, 7); err != nil {
		t.Fatal(err)
	}
	kernel := filepath.Join(dir, "vmlinuz")
	os.WriteFile(kernel, []byte("not really a kernel"), 0o644)
	b := filepath.Join(dir, "vm.smolmachine")
	out, err := runCLI(t, "pack", "-o", b, "--memory", mem, "--kernel", kernel, "--disk", "root="+mem, "--cpus", "2", "--mem", "64M", "--json")
	if err != nil {
		t.Fatalf("pack: %v\n%s", err, out)
	}
	var pr chunkstore.PackResult
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.LogicalBytes != 2*(4<<20+100)+19 || pr.ReusedPages == 0 {
		t.Fatalf("pack --json: %v %+v\n%s", err, pr, out)
	}

	out, err = runCLI(t, "inspect", "--json", b)
	if err != nil {
		t.Fatal(err)
	}
	var insp struct {
		Config struct {
			VCPUs       int   `json:"vcpus"`
			MemoryBytes int64 `json:"memory_bytes"`
		} `json:"config"`
		Stats struct {
			Artifacts  []struct{ Name string } `json:"artifacts"`
			DedupRatio float64                 `json:"dedup_ratio"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(out), &insp); err != nil || insp.Config.VCPUs != 2 || insp.Config.MemoryBytes != 64<<20 ||
		len(insp.Stats.Artifacts) != 3 || insp.Stats.DedupRatio < 1.9 {
		t.Fatalf("inspect --json: %v %+v\n%s", err, insp, out)
	}
	if out, err = runCLI(t, "inspect", "--json=false", b); err != nil || !strings.Contains(out, "disk/root") || !strings.Contains(out, "MiB") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	if out, err = runCLI(t, "verify", b); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	for _, art := range []string{"memory", "disk/root", "kernel"} {
		x := filepath.Join(dir, "x-"+strings.ReplaceAll(art, "/", "-"))
		if out, err = runCLI(t, "extract", b, art, "-o", x); err != nil {
			t.Fatalf("extract %s: %v\n%s", art, err, out)
		}
		want, _ := os.ReadFile(mem)
		if art == "kernel" {
			want, _ = os.ReadFile(kernel)
		}
		if got, _ := os.ReadFile(x); !bytes.Equal(got, want) {
			t.Fatalf("extract %s differs", art)
		}
	}

	// Corrupt a byte in the middle of the frame data: verify fails,
	// naming the frame, with a non-zero exit.
	raw, _ := os.ReadFile(b)
	raw[len(raw)/3] ^= 0xff
	bad := filepath.Join(dir, "bad.smolmachine")
	os.WriteFile(bad, raw, 0o644)
	out, err = runCLI(t, "verify", "--json", bad)
	var ee *exitError
	if !errors.As(err, &ee) || exitCode(err) == 0 || !errors.Is(err, chunkstore.ErrCorrupt) {
		t.Fatalf("verify of a corrupt bundle: %v\n%s", err, out)
	}
	var vr struct {
		OK       bool `json:"ok"`
		Failures []struct {
			Frame    int    `json:"frame"`
			Expected string `json:"expected"`
		} `json:"failures"`
	}
	if err := json.Unmarshal([]byte(out), &vr); err != nil || vr.OK || len(vr.Failures) != 1 || !strings.HasPrefix(vr.Failures[0].Expected, "sha256:") {
		t.Fatalf("verify --json of a corrupt bundle: %v %+v\n%s", err, vr, out)
	}

	if _, err = runCLI(t, "pack", "-o", filepath.Join(dir, "x"), "--disk", "noequals"); err == nil {
		t.Fatal("pack accepted --disk without NAME=")
	}
	if _, err = runCLI(t, "extract", b, "disk/none", "-o", filepath.Join(dir, "y")); err == nil {
		t.Fatal("extract of a missing artifact succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); err == nil {
		t.Fatal("failed extract left its output")
	}
}

func TestParseSizeAndHumanBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"512", 512, true}, {"4K", 4096, true}, {"256M", 256 << 20, true}, {"1G", 1 << 30, true},
		{"2GiB", 2 << 30, true}, {"1MB", 1 << 20, true}, {"", 0, false}, {"x", 0, false}, {"-1M", 0, false},
	} {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v", tt.in, got, err)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 256 << 20: "256.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1", "4K", "256M", "2GiB", "9223372036854775807", "-1", "1T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}
