package vmm

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

func TestNetConfigValidate(t *testing.T) {
	fw := network.PortForward{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, GuestPort: 80, Proto: network.TCP}
	for _, tc := range []struct {
		name string
		n    *NetConfig
		ok   bool
	}{
		{"nil", nil, true},
		{"user", &NetConfig{Mode: network.Mode{Kind: "user"}, Forwards: []network.PortForward{fw}}, true},
		{"default kind", &NetConfig{Forwards: []network.PortForward{fw}}, true},
		{"none", &NetConfig{Mode: network.Mode{Kind: "none"}}, true},
		{"tap with forwards", &NetConfig{Mode: network.Mode{Kind: "tap", Tap: "tap0"}, Forwards: []network.PortForward{fw}}, false},
		{"none with forwards", &NetConfig{Mode: network.Mode{Kind: "none"}, Forwards: []network.PortForward{fw}}, false},
		{"unknown", &NetConfig{Mode: network.Mode{Kind: "slirp"}}, false},
		{"multicast MAC", &NetConfig{MAC: [6]byte{1, 2, 3, 4, 5, 6}}, false},
		{"forward twice", &NetConfig{Forwards: []network.PortForward{fw, fw}}, false},
	} {
		err := tc.n.validate()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestNetworkInfo(t *testing.T) {
	fw := network.PortForward{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, GuestPort: 80, Proto: network.TCP}
	m := &Machine{cfg: Config{Net: &NetConfig{MAC: [6]byte{0x52, 0, 0, 0, 0, 1}, Forwards: []network.PortForward{fw}}}}
	info := m.Network()
	if info == nil || info.Mode != "user" || info.MAC != "52:00:00:00:00:01" || info.GuestIP != network.GuestIP ||
		len(info.Forwards) != 1 || info.Forwards[0] != "127.0.0.1:8080:80/tcp" {
		t.Fatalf("Network() = %+v", info)
	}
	m.cfg.Net.Mode = network.Mode{Kind: "none"}
	if m.Network() != nil {
		t.Fatal("--net none has a network")
	}
}
