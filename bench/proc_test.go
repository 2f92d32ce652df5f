package bench

import (
	"os"
	"strings"
	"testing"
)

func TestParseSmapsRollup(t *testing.T) {
	const good = `55d1c0a5e000-7ffd5b9f2000 ---p 00000000 00:00 0                          [rollup]
Rss:              166320 kB
Pss:              158712 kB
Pss_Dirty:         12000 kB
Shared_Clean:       9000 kB
Private_Dirty:     12000 kB
Swap:                  0 kB
SwapPss:               0 kB
`
	for _, tc := range []struct {
		name, in string
		want     Memory
		wantErr  string
	}{
		{"real layout", good, Memory{RSS: 166320 << 10, PSS: 158712 << 10}, ""},
		{"Pss_Dirty is not Pss", "Rss: 4 kB\nPss_Dirty: 9 kB\nPss: 2 kB\n", Memory{RSS: 4096, PSS: 2048}, ""},
		{"missing Pss", "Rss: 4 kB\n", Memory{}, "no Rss or Pss"},
		{"empty", "", Memory{}, "no Rss or Pss"},
		{"bad unit", "Rss: 4 MB\nPss: 2 kB\n", Memory{}, `line 1: Rss: want "N kB"`},
		{"bad number", "Rss: 4 kB\nPss: x kB\n", Memory{}, `line 2: Pss: bad size "x"`},
		{"negative", "Rss: -4 kB\nPss: 2 kB\n", Memory{}, "bad size"},
		{"twice", "Rss: 4 kB\nRss: 4 kB\nPss: 2 kB\n", Memory{}, "second Rss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSmapsRollup(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestProcessMemorySelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skip("no smaps_rollup on this kernel")
	}
	m, err := ProcessMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PSS <= 0 || m.PSS > m.RSS {
		t.Fatalf("own memory %+v: want 0 < PSS <= RSS", m)
	}
	if _, err := ProcessMemory(-1); err == nil {
		t.Fatal("ProcessMemory(-1) succeeded")
	}
}

func FuzzParseSmapsRollup(f *testing.F) {
	f.Add("Rss: 4 kB\nPss: 2 kB\n")
	f.Add("Rss:4 kB\nPss:\n")
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseSmapsRollup(strings.NewReader(s))
		if err == nil && (m.RSS < 0 || m.PSS < 0) {
			t.Fatalf("negative sizes %+v from %q", m, s)
		}
	})
}
