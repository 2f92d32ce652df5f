package main

import "testing"

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"4096", 4096, true},
		{"128K", 128 << 10, true},
		{"128KiB", 128 << 10, true},
		{"1MiB", 1 << 20, true},
		{"256mb", 256 << 20, true},
		{"2G", 2 << 30, true},
		{"1T", 1 << 40, true},
		{"10B", 10, true},
		{" 3 M ", 3 << 20, true},
		{"", 0, false},
		{"M", 0, false},
		{"12Q", 0, false},
		{"1.5G", 0, false},
		{"-1", 0, false},
		{"9999999999999T", 0, false},
		{"99999999999999999999", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "128K", "1MiB", "2g", "12Q", "", "9999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
	})
}
