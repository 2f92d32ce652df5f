package format

import (
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	d := PageDigest([]byte("x"))
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{d.String(), true},
		{d.Hex(), true},
		{strings.ToUpper(d.Hex()), true},
		{"sha256:" + d.Hex()[:63], false},
		{"sha512:" + d.Hex(), false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{"", false},
	} {
		got, err := ParseDigest(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != d) {
			t.Errorf("ParseDigest(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add(PageDigest(nil).String())
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			return
		}
		// Whatever parses must print back to the same digest.
		if d2, err := ParseDigest(d.String()); err != nil || d2 != d {
			t.Fatalf("%q parsed to %s, which does not round-trip", s, d)
		}
	})
}
