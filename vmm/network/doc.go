// Package network gives a smolvm guest its network: user-mode NAT by
// default (the virtual network of github.com/containers/gvisor-tap-vsock,
// embedded in the VMM process: DHCP, DNS, NAT to the host, port forwards), a
// tap device for users who bridge (--net tap:IFNAME), or none. Each mode
// yields a Backend for the virtio-net device (vmm/devices/virtio/net): one
// Ethernet frame per ReadFrame/WriteFrame.
//
// The user-mode network is fixed (see docs/NET.md): subnet 192.168.127.0/24,
// gateway and DNS at .1, the guest at .2 by a static DHCP lease on its MAC,
// and the host's loopback reachable from the guest at .254, named
// host.smolvm.internal. Port forwards (-p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|
// udp]) are bound on the host before the VM starts, so a port in use or a
// malformed spec is an error before anything runs.
//
// What this package must not do: send traffic anywhere the guest did not
// ask for (no probes), touch the host's own network configuration (tap
// devices are opened, never created with addresses or routes), or know
// about virtio queues.
//
// Known limit: gvisor-tap-vsock's virtual network has no Close; its DHCP
// and DNS goroutines live until the process exits. User.Close stops
// everything smolvm starts (frame pump, forwards) and detaches the guest.
package network
