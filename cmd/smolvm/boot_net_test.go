package main

import (
	"errors"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

func TestParseNetFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     string
		publish  []string
		wantNil  bool
		forwards int
		err      bool
	}{
		{"default user", "user", nil, false, 0, false},
		{"user with forwards", "user", []string{"8080:80", "127.0.0.1:5353:53/udp"}, false, 2, false},
		{"none", "none", nil, true, 0, false},
		{"tap", "tap:tap0", nil, false, 0, false},
		{"tap with -p", "tap:tap0", []string{"8080:80"}, false, 0, true},
		{"none with -p", "none", []string{"8080:80"}, false, 0, true},
		{"malformed -p", "user", []string{"8080"}, false, 0, true},
		{"same port twice", "user", []string{"8080:80", "8080:81"}, false, 0, true},
		{"same port tcp and udp", "user", []string{"8080:80", "8080:80/udp"}, false, 2, false},
		{"bad mode", "slirp", nil, false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := parseNetFlags(tc.mode, tc.publish)
			if tc.err {
				if !errors.Is(err, network.ErrBadSpec) {
					t.Fatalf("error %v, want ErrBadSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (nc == nil) != tc.wantNil {
				t.Fatalf("config %+v", nc)
			}
			if nc != nil && len(nc.Forwards) != tc.forwards {
				t.Fatalf("%d forwards, want %d", len(nc.Forwards), tc.forwards)
			}
		})
	}
}
