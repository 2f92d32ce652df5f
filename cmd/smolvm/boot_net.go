package main

import (
	"fmt"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/network"
)

const netFlagHelp = `guest network: user (NAT through smolvm's embedded virtual network: DHCP,
DNS, the host's 127.0.0.1 as host.smolvm.internal), tap:IFNAME (an existing
tap interface, for bridging) or none (docs/NET.md)`

const publishFlagHelp = `forward a host port to the guest: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]
(repeatable; HOSTIP defaults to 127.0.0.1; user network only)`

// parseNetFlags turns --net and -p into the machine's network config,
// refusing malformed values before anything starts (ports are bound by
// vmm.New, still before the guest runs).
func parseNetFlags(mode string, publish []string) (*vmm.NetConfig, error) {
	m, err := network.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	nc := &vmm.NetConfig{Mode: m}
	for _, p := range publish {
		f, err := network.ParsePortForward(p)
		if err != nil {
			return nil, err
		}
		nc.Forwards = append(nc.Forwards, f)
	}
	if len(nc.Forwards) > 0 && m.Kind != "user" {
		return nil, fmt.Errorf("%w: -p needs --net user (got --net %s)", network.ErrBadSpec, mode)
	}
	if err := network.CheckForwards(nc.Forwards); err != nil {
		return nil, err
	}
	if m.Kind == "none" {
		return nil, nil
	}
	return nc, nil
}

// publishedForwards is what `smolvm ps` shows of nc's forwards
// (control.Info.Forwards): "127.0.0.1:8080->80/tcp" each.
func publishedForwards(nc *vmm.NetConfig) []string {
	if nc == nil {
		return nil
	}
	var out []string
	for _, f := range nc.Forwards {
		out = append(out, f.Published())
	}
	return out
}
