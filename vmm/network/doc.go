// Package network gives a smolvm guest its network: user-mode NAT by
// default (the virtual network of github.com/containers/gvisor-tap-vsock:
// DHCP, DNS, NAT to the host, port forwards), a tap device for users who
// bridge (--net tap:IFNAME), or none. Each mode yields a Backend for the
// virtio-net device (vmm/devices/virtio/net): one Ethernet frame per
// ReadFrame/WriteFrame.
//
// The user-mode network itself lives in package usernet and runs in a
// helper process (cmd/smolvm-net): StartUser binds the forwards' host
// ports, starts the helper with the switch's end of a frame socket pair and
// the listeners, and hands the device the other end. This package must not
// import usernet (or anything of gVisor's): the VMM links it, and a smolvm
// start would pay the netstack's package initialisers.
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
package network
