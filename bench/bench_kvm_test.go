package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
)

// TestKVMBench runs bin/smolvm (make build; $SMOLVM_BENCH_SMOLVM overrides) `bench --json --runs 1 --mem
// 256M` for a quick set of methods (SMOLVM_BENCH_METHODS=all for every
// one; about 5 minutes in the lab) and checks that every method produced a
// time, a ratio to boot and memory figures, and that the report names the
// acceleration.
func TestKVMBench(t *testing.T) {
	kvmtest.Require(t)
	bin := os.Getenv("SMOLVM_BENCH_SMOLVM") // another build of smolvm, with smolvm-agent beside it
	if bin == "" {
		var err error
		if bin, err = filepath.Abs("../bin/smolvm"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("bin/smolvm missing (make build): %v", err)
	}
	methods := os.Getenv("SMOLVM_BENCH_METHODS")
	if methods == "" {
		methods = strings.Join([]string{MethodBoot, MethodUffdPrefetch, MethodQEMUBoot, MethodQEMURestore}, ",")
	}
	want, err := SelectMethods(methods)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "--json", "--runs", "1", "--mem", "256M", "--methods", methods)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("smolvm bench: %v\nstderr:\n%s", err, stderr.String())
	}
	rep, err := DecodeReport(stdout.Bytes())
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s", err, stdout.String())
	}
	if rep.Env.Accel != kvmtest.Label() {
		t.Errorf("accel %q, want %q", rep.Env.Accel, kvmtest.Label())
	}
	if len(rep.Env.Skipped) > 0 {
		t.Errorf("methods skipped: %+v", rep.Env.Skipped)
	}
	got := map[string]Result{}
	for _, r := range rep.Results {
		got[r.Method] = r
	}
	for _, m := range want {
		r, ok := got[m.Name]
		switch {
		case !ok:
			t.Errorf("%s: no result", m.Name)
		case r.Error != "":
			t.Errorf("%s: %s", m.Name, r.Error)
		case r.Ready.N != 1 || r.Ready.Median <= 0:
			t.Errorf("%s: no ready time: %+v", m.Name, r.Ready)
		case r.VsBoot <= 0:
			t.Errorf("%s: no ratio to boot", m.Name)
		case r.RSSBytes <= 0 || r.PSSBytes <= 0 || r.SizeBytes <= 0:
			t.Errorf("%s: memory or size missing: rss %d pss %d size %d", m.Name, r.RSSBytes, r.PSSBytes, r.SizeBytes)
		case strings.HasPrefix(m.Name, "uffd") && (r.RAMReadBytes <= 0 || r.Faults < 0):
			t.Errorf("%s: RAM read %d, faults %d: want counts", m.Name, r.RAMReadBytes, r.Faults)
		}
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("smolvm bench in %v:\n%s", time.Since(start).Round(time.Second), table.String())
}
