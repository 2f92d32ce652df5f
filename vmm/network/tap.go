package network

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTap attaches to the tap interface name (creating a non-persistent
// one if it does not exist, which needs CAP_NET_ADMIN) and returns it as a
// frame Backend: no packet-information prefix, no virtio-net header. The
// interface's addresses, bridge and link state are the user's business.
func OpenTap(name string) (*TapBackend, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("network: tap %s: open /dev/net/tun: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: tap %s: %w", ErrBadSpec, name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("network: tap %s: TUNSETIFF: %w", name, err)
	}
	return &TapBackend{frameFile{os.NewFile(uintptr(fd), "tap "+name)}, name}, nil
}

// TapBackend is a tap device as a frame Backend.
type TapBackend struct {
	frameFile
	Name string
}
