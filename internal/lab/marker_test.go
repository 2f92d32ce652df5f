package lab

import (
	"strings"
	"testing"
)

func TestMarkerWriter(t *testing.T) {
	const nonce = "0123abcd"
	m := "smolvm-lab-" + nonce + " exit="
	tests := []struct {
		name     string
		chunks   []string
		wantOut  string
		wantCode int
		found    bool
	}{
		{"plain", []string{"hello\n", "\n" + m + "0\n"}, "hello\n", 0, true},
		{"no final newline", []string{"abc", "\n" + m + "3\n"}, "abc\n", 3, true},
		{"split marker", []string{"x\n\nsmolvm-lab-0123", "abcd exit=4", "2\n"}, "x\n", 42, true},
		{"blank lines kept", []string{"a\n\n\nb\n", "\n" + m + "1\n"}, "a\n\n\nb\n", 1, true},
		{"other nonce is output", []string{"smolvm-lab-ffff exit=9\n"}, "smolvm-lab-ffff exit=9\n", 0, false},
		{"bad number is output", []string{m + "x\n"}, m + "x\n", 0, false},
		{"no marker", []string{"partial"}, "partial", 0, false},
		{"trailing blank kept", []string{"a\n\n"}, "a\n\n", 0, false},
		{"setup failure", []string{"smolvm-lab: lab VM setup failed: x\n", m + "125\n"}, "smolvm-lab: lab VM setup failed: x\n", 125, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			w := newMarkerWriter(&out, nonce)
			for _, c := range tt.chunks {
				if n, err := w.Write([]byte(c)); n != len(c) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			code, found := w.status()
			if out.String() != tt.wantOut || code != tt.wantCode || found != tt.found {
				t.Errorf("out %q code %d found %v; want %q %d %v", out.String(), code, found, tt.wantOut, tt.wantCode, tt.found)
			}
		})
	}
}
