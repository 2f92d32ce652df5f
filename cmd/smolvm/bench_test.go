package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMems(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int64
		wantErr string
	}{
		{"256M", []int64{256 << 20}, ""},
		{"256M, 1G,256M,4G", []int64{256 << 20, 1 << 30, 4 << 30}, ""},
		{"", nil, "no size"},
		{"32M", nil, "at least 64M"},
		{"100000K", nil, "whole MiB"},
		{"lots", nil, "bad size"},
	} {
		got, err := parseMems(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseMems(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("parseMems(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("parseMems(%q) = %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

func TestBenchFlagsValidate(t *testing.T) {
	ok := benchFlags{methods: "all", mems: "256M", runs: 1, cpus: 1}
	for _, tc := range []struct {
		name    string
		edit    func(*benchFlags)
		wantErr string
	}{
		{"defaults", func(*benchFlags) {}, ""},
		{"clones", func(f *benchFlags) { f.clones = 4 }, ""},
		{"one clone", func(f *benchFlags) { f.clones = 1 }, "--clones"},
		{"no runs", func(f *benchFlags) { f.runs = 0 }, "--runs"},
		{"no cpus", func(f *benchFlags) { f.cpus = 0 }, "--cpus"},
		{"method", func(f *benchFlags) { f.methods = "boot,warp" }, `unknown method "warp"`},
		{"plot", func(f *benchFlags) { f.plot = "x.pdf" }, "--plot"},
		{"png", func(f *benchFlags) { f.plot = "x.png" }, ""},
		{"mem", func(f *benchFlags) { f.mems = "1X" }, "--mem"},
	} {
		f := ok
		tc.edit(&f)
		_, _, err := f.validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	inner := strings.Join(benchFlags{methods: "boot", mems: "256M,1G", runs: 2, clones: 3, cpus: 2}.innerArgs("/k", "/i"), " ")
	if inner != "bench --methods boot --mem 256M,1G --runs 2 --clones 3 --cpus 2 --kernel /k --initrd /i" {
		t.Fatalf("inner args: %s", inner)
	}
}

// TestBenchReportFlag renders a saved report through the CLI: the table
// and the plot, and a clear error for a file that is not a report.
func TestBenchReportFlag(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "smolvm")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	rep := filepath.Join(dir, "r.json")
	os.WriteFile(rep, []byte(`{"env":{"accel":"nested TCG","page_cache":"cold","runs":1,"command":"smolvm bench"},
"results":[{"method":"boot","mem_bytes":268435456,"ready_s":{"n":1,"median":4,"min":4,"max":4},"vs_boot":1,"ram_read_bytes":-1,"faults":-1,"rss_bytes":-1,"pss_bytes":-1,"size_bytes":1024},
{"method":"uffd","mem_bytes":268435456,"ready_s":{"n":1,"median":0.2,"min":0.2,"max":0.2},"vs_boot":0.05,"ram_read_bytes":1048576,"faults":12,"rss_bytes":-1,"pss_bytes":-1,"size_bytes":2048}]}`), 0o644)
	svg := filepath.Join(dir, "p.svg")
	out, err := exec.Command(bin, "bench", "--report", rep, "--plot", svg).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"nested TCG", "0.050x (1/20)", "1MiB"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if fi, err := os.Stat(svg); err != nil || fi.Size() < 1000 {
		t.Fatalf("plot: %v", err)
	}
	// A report with a failed method prints it and exits 1.
	os.WriteFile(rep, []byte(`{"env":{"accel":"nested TCG"},"results":[{"method":"mmap","mem_bytes":268435456,"error":"daemon died"}]}`), 0o644)
	out, err = exec.Command(bin, "bench", "--report", rep).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "mmap at 256MiB failed: daemon died") {
		t.Fatalf("failed method: %v %s", err, out)
	}
	os.WriteFile(rep, []byte(`{"results":[]}`), 0o644)
	out, err = exec.Command(bin, "bench", "--report", rep).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a bench report") {
		t.Fatalf("bad report accepted: %v %s", err, out)
	}
}
