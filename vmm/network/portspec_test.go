package network_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

func TestParsePortForward(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		in   string
		want network.PortForward
		err  bool
	}{
		{"8080:80", network.PortForward{HostIP: lo, HostPort: 8080, GuestPort: 80, Proto: network.TCP}, false},
		{"8080:80/tcp", network.PortForward{HostIP: lo, HostPort: 8080, GuestPort: 80, Proto: network.TCP}, false},
		{"5353:53/udp", network.PortForward{HostIP: lo, HostPort: 5353, GuestPort: 53, Proto: network.UDP}, false},
		{"0.0.0.0:80:8000", network.PortForward{HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 80, GuestPort: 8000, Proto: network.TCP}, false},
		{"[::1]:2222:22", network.PortForward{HostIP: netip.MustParseAddr("::1"), HostPort: 2222, GuestPort: 22, Proto: network.TCP}, false},
		{"65535:1", network.PortForward{HostIP: lo, HostPort: 65535, GuestPort: 1, Proto: network.TCP}, false},
		{"", network.PortForward{}, true},
		{"80", network.PortForward{}, true},
		{"80:", network.PortForward{}, true},
		{":80", network.PortForward{}, true},
		{"0:80", network.PortForward{}, true},
		{"65536:80", network.PortForward{}, true},
		{"80:80/sctp", network.PortForward{}, true},
		{"80:80/", network.PortForward{}, true},
		{"-1:80", network.PortForward{}, true},
		{"+80:80", network.PortForward{}, true},
		{"localhost:80:80", network.PortForward{}, true},
		{"::1:80:80", network.PortForward{}, true},
		{"[fe80::1%eth0]:80:80", network.PortForward{}, true},
		{"1.2.3:80:80", network.PortForward{}, true},
		{"8080-8090:80", network.PortForward{}, true},
		{"000000080:80", network.PortForward{}, true},
	} {
		got, err := network.ParsePortForward(tc.in)
		if tc.err {
			if !errors.Is(err, network.ErrBadSpec) {
				t.Errorf("%q: %v, %+v; want ErrBadSpec", tc.in, err, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestPortForwardPublished(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"8080:80", "127.0.0.1:8080->80/tcp"},
		{"0.0.0.0:53:5353/udp", "0.0.0.0:53->5353/udp"},
		{"[::1]:2222:22", "[::1]:2222->22/tcp"},
		{"[::ffff:10.0.0.1]:1:65535/tcp", "10.0.0.1:1->65535/tcp"},
	} {
		f, err := network.ParsePortForward(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := f.Published(); got != tc.want {
			t.Errorf("%q: Published() = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want network.Mode
		err  bool
	}{
		{"", network.Mode{Kind: "user"}, false},
		{"user", network.Mode{Kind: "user"}, false},
		{"none", network.Mode{Kind: "none"}, false},
		{"tap:tap0", network.Mode{Kind: "tap", Tap: "tap0"}, false},
		{"tap:", network.Mode{}, true},
		{"tap:a/b", network.Mode{}, true},
		{"tap:0123456789abcdef", network.Mode{}, true},
		{"bridge", network.Mode{}, true},
	} {
		got, err := network.ParseMode(tc.in)
		if tc.err != (err != nil) || got != tc.want {
			t.Errorf("%q: %+v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, network.ErrBadSpec) {
			t.Errorf("%q: %v is not ErrBadSpec", tc.in, err)
		}
	}
}

// FuzzParsePortForward: never a panic; what parses prints back to itself.
func FuzzParsePortForward(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:80:80/udp", "[::1]:1:2/tcp", ":", "/", "[]:1:1", "1:1:1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := network.ParsePortForward(s)
		if err != nil {
			if !errors.Is(err, network.ErrBadSpec) {
				t.Fatalf("%q: error %v is not ErrBadSpec", s, err)
			}
			return
		}
		if p.HostPort == 0 || p.GuestPort == 0 || (p.Proto != network.TCP && p.Proto != network.UDP) || !p.HostIP.IsValid() {
			t.Fatalf("%q parsed to %+v", s, p)
		}
		spec := p.String()
		q, err := network.ParsePortForward(spec)
		if err != nil || q != p {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, p, spec, q, err)
		}
	})
}

func TestMAC(t *testing.T) {
	seen := map[[6]byte]bool{}
	for range 100 {
		m := network.RandomMAC()
		if m[0]&1 != 0 || m[0]&2 == 0 || seen[m] {
			t.Fatalf("RandomMAC %x: multicast, not local, or repeated", m)
		}
		seen[m] = true
		if p, err := network.ParseMAC(network.MACString(m)); err != nil || p != m {
			t.Fatalf("ParseMAC(%s) = %x, %v", network.MACString(m), p, err)
		}
	}
	for _, bad := range []string{"", "01:00:5e:00:00:01", "00:00:00:00:00:00", "52:54:00:12:34", "zz:54:00:12:34:56"} {
		if _, err := network.ParseMAC(bad); !errors.Is(err, network.ErrBadSpec) {
			t.Errorf("ParseMAC(%q): %v", bad, err)
		}
	}
}
