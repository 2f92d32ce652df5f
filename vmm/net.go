package vmm

import (
	"errors"
	"fmt"
	"io"

	vnet "github.com/smolvm/smolvm/vmm/devices/virtio/net"
	"github.com/smolvm/smolvm/vmm/network"
)

// NetConfig is the guest's network interface (docs/NET.md).
type NetConfig struct {
	// Mode is user (NAT through the virtual network of the smolvm-net
	// helper process, the default), tap (an existing or new tap
	// interface) or none.
	Mode network.Mode
	// MAC is the guest's address; zero picks a random one (New records it
	// in the machine's Config).
	MAC [6]byte
	// Forwards are host ports forwarded to the guest (user mode only);
	// they are bound in New, before the guest runs.
	Forwards []network.PortForward
	// Log receives the virtual network's log (nil discards it).
	Log io.Writer
}

// netPCIClass is an Ethernet controller.
const netPCIClass = 0x020000

func (n *NetConfig) validate() error {
	if n == nil {
		return nil
	}
	switch n.Mode.Kind {
	case "", "user":
	case "tap", "none":
		if len(n.Forwards) > 0 {
			return fmt.Errorf("%w: port forwards (-p) need the user-mode network, not --net %s", ErrConfig, n.Mode.Kind)
		}
	default:
		return fmt.Errorf("%w: network mode %q", ErrConfig, n.Mode.Kind)
	}
	if n.MAC != ([6]byte{}) && n.MAC[0]&1 != 0 {
		return fmt.Errorf("%w: MAC %s is multicast", ErrConfig, network.MACString(n.MAC))
	}
	if err := network.CheckForwards(n.Forwards); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// createNet adds the virtio-net device when Config.Net asks for one. The
// user-mode network binds its forwards here: a port in use fails New.
func (m *Machine) createNet() error {
	nc := m.cfg.Net
	if nc == nil || nc.Mode.Kind == "none" {
		return nil
	}
	c := *nc
	if c.MAC == ([6]byte{}) {
		c.MAC = network.RandomMAC()
	}
	m.cfg.Net = &c

	var (
		be   network.Backend
		user *network.UserProcess
		mtu  uint16 // tap: the interface's default
		err  error
	)
	switch c.Mode.Kind {
	case "tap":
		if be, err = network.OpenTap(c.Mode.Tap); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	default:
		// The virtual network runs in its helper process (smolvm-net),
		// started here and not waited for: it comes up while the machine
		// is built, and frames wait in the socket meanwhile.
		if user, err = network.StartUser(network.UserConfig{MAC: c.MAC, Forwards: c.Forwards, Log: c.Log}); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		be, mtu = user.Backend(), network.MTU
	}
	closeUser := func() error {
		if user != nil {
			return user.Close()
		}
		return nil
	}
	dev, err := vnet.New(vnet.Config{MAC: c.MAC, Backend: be, MTU: mtu})
	if err != nil {
		be.Close()
		closeUser()
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	closeAll := func() error { return errors.Join(dev.Close(), closeUser()) }
	if _, err := m.addVirtio("net", dev, netPCIClass, closeAll); err != nil {
		closeAll()
		return err
	}
	// The device's own state is its MAC and link status, both rebuilt from
	// Config; a restored clone that needs a new identity uses SetMAC
	// (docs/NET.md, "Clones").
	return nil
}

// NetInfo describes the guest's network for ps and status.
type NetInfo struct {
	Mode     string
	MAC      string
	GuestIP  string `json:",omitempty"` // user mode: the static lease
	Forwards []string
}

// Network returns the guest's network, or nil when it has none.
func (m *Machine) Network() *NetInfo {
	nc := m.cfg.Net
	if nc == nil || nc.Mode.Kind == "none" {
		return nil
	}
	info := &NetInfo{Mode: nc.Mode.Kind, MAC: network.MACString(nc.MAC)}
	if info.Mode == "" || info.Mode == "user" {
		info.Mode, info.GuestIP = "user", network.GuestIP
	} else {
		info.Mode = "tap:" + nc.Mode.Tap
	}
	for _, f := range nc.Forwards {
		info.Forwards = append(info.Forwards, f.String())
	}
	return info
}
