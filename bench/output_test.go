package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sampleReport is a finished report of two sizes with a failure, a skip
// and clones.
func sampleReport() *Report {
	rep := &Report{
		Env: Env{Accel: "nested TCG", PageCache: "cold", Host: "test CPU", Guest: "test guest",
			Command: "smolvm bench --mem 256M,1G", Date: time.Date(2026, 11, 24, 20, 0, 0, 0, time.UTC), Runs: 2, Clones: 4,
			Notes: []string{"a caveat"}, Skipped: []Skipped{{Method: MethodMmap, Reason: "no run subcommand"}}},
		Results: []Result{
			{Method: MethodBoot, MemBytes: 256 << 20, SizeBytes: 18 << 20, Samples: []Sample{{ReadySeconds: 4, RAMReadBytes: Unknown, Faults: Unknown, RSSBytes: 100 << 20, PSSBytes: 90 << 20}, {ReadySeconds: 6, RAMReadBytes: Unknown, Faults: Unknown, RSSBytes: 100 << 20, PSSBytes: 90 << 20}}},
			{Method: MethodUffd, MemBytes: 256 << 20, SizeBytes: 36 << 20, Clones: &Clones{N: 4, PSSPerClone: 20 << 20}, Samples: []Sample{{ReadySeconds: 0.05, RAMReadBytes: 40 << 20, Faults: 192, Prefetch: &PrefetchUse{Used: 150, Wasted: 20}, RSSBytes: 70 << 20, PSSBytes: 60 << 20, Phases: []Phase{{"daemon", 0.01}, {"ready", 0.05}}}}},
			{Method: MethodQEMURestore, MemBytes: 256 << 20, Error: "QEMU exploded\n"},
			{Method: MethodEager, MemBytes: 256 << 20, Error: "no snapshot"},
			{Method: MethodMmap, MemBytes: 256 << 20, Error: "no snapshot"},
			{Method: MethodBoot, MemBytes: 1 << 30, SizeBytes: 18 << 20, Samples: []Sample{{ReadySeconds: 5, RAMReadBytes: Unknown, Faults: Unknown, RSSBytes: Unknown, PSSBytes: Unknown}}},
			{Method: MethodQEMUBoot, MemBytes: 1 << 30, SizeBytes: 18 << 20, Samples: []Sample{{ReadySeconds: 2.5, RAMReadBytes: Unknown, Faults: Unknown, RSSBytes: Unknown, PSSBytes: Unknown}}},
		},
	}
	for i := range rep.Results {
		if rep.Results[i].Error == "" {
			rep.Results[i].finish()
		}
	}
	rep.sortResults()
	rep.setRatios()
	return rep
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	row := func(prefix string) string {
		for _, l := range lines {
			if f := strings.Join(strings.Fields(l), " "); strings.HasPrefix(f, prefix+" ") {
				return f
			}
		}
		t.Fatalf("no row %q in:\n%s", prefix, out)
		return ""
	}
	for _, tc := range []struct{ prefix, want string }{
		{"boot 256MiB", "boot 256MiB 5.00s 4.00s 6.00s 1.00x - - - 100MiB 90MiB 18MiB -"},
		{"uffd 256MiB", "uffd 256MiB 50ms 50ms 50ms 0.010x (1/100) 40MiB 192 150/20 70MiB 60MiB 36MiB 20MiB"},
		{"qemu-restore 256MiB", "qemu-restore 256MiB failed -"},
		{"qemu-boot 1GiB", "qemu-boot 1GiB 2.50s 2.50s 2.50s 0.50x - - - - - 18MiB -"},
	} {
		if got := row(tc.prefix); got != tc.want {
			t.Errorf("row %q:\n got %s\nwant %s", tc.prefix, got, tc.want)
		}
	}
	for _, want := range []string{
		"smolvm bench [nested TCG, page cache cold] 2026-11-24 20:00 UTC, 2 run(s) each",
		"PSS/CLONE(4)",
		"qemu-restore at 256MiB failed: QEMU exploded\n",
		"eager, mmap at 256MiB failed: no snapshot\n",
		"mmap not run: no run subcommand",
		"note: a caveat",
		"uffd 256MiB timeline (run ready in 50ms): daemon 10ms, ready 50ms\n",
		"figures are nested TCG",
		"command: smolvm bench --mem 256M,1G",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw["env"].(map[string]any)["accel"] != "nested TCG" {
		t.Fatalf("JSON env.accel missing: %s", b.String())
	}
	back, err := DecodeReport(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rep.Results[i].Method != MethodUffd {
		i++
	}
	if len(back.Results) != len(rep.Results) || back.Results[i].VsBoot != rep.Results[i].VsBoot || back.Results[i].VsBoot == 0 ||
		back.Results[i].Clones == nil || back.Results[i].Clones.PSSPerClone != 20<<20 || back.Results[i].Faults != 192 ||
		back.Results[i].PrefetchUsed != 150 || back.Results[i].PrefetchWasted != 20 {
		t.Fatalf("round trip changed the report:\n%+v\n%+v", back.Results, rep.Results)
	}
	for _, bad := range []string{"", "{", `{"results":[]}`} {
		if _, err := DecodeReport([]byte(bad)); err == nil {
			t.Errorf("DecodeReport(%q) succeeded", bad)
		}
	}
}

func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport()
	for _, tc := range []struct {
		file  string
		magic string
	}{
		{"ready.svg", "<?xml"},
		{"ready.png", "\x89PNG"},
	} {
		p := filepath.Join(dir, tc.file)
		if err := WritePlot(p, rep); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), tc.magic) || len(b) < 1000 {
			t.Fatalf("%s: %d bytes starting %q, want a %q file", tc.file, len(b), b[:min(len(b), 8)], tc.magic)
		}
		if tc.file == "ready.svg" {
			for _, want := range []string{"nested TCG", "qemu-boot", "guest RAM 1GiB"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("svg lacks %q", want)
				}
			}
		}
	}
	if err := WritePlot(filepath.Join(dir, "x.pdf"), rep); err == nil || !strings.Contains(err.Error(), ".svg or .png") {
		t.Fatalf("pdf: err = %v", err)
	}
	if err := WritePlot(filepath.Join(dir, "e.svg"), &Report{Env: rep.Env}); err == nil {
		t.Fatal("empty report plotted")
	}
}

func TestStrings(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{sizeString(Unknown), "-"},
		{sizeString(512), "512B"},
		{sizeString(1536), "1.5KiB"},
		{sizeString(256 << 20), "256MiB"},
		{secString(0), "-"},
		{secString(0.0123), "12ms"},
		{secString(12.345), "12.35s"},
		{ratioString(0), "-"},
		{ratioString(0.05), "0.050x (1/20)"},
		{ratioString(1.1), "1.10x"},
		{countString(Unknown), "-"},
		{countString(0), "0"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
