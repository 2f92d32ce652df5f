package network

import "net"

// The user-mode network's fixed addresses (docs/NET.md).
const (
	Subnet     = "192.168.127.0/24"
	GatewayIP  = "192.168.127.1" // DHCP, DNS, default route
	GuestIP    = "192.168.127.2" // the guest's static lease
	HostIP     = "192.168.127.254"
	HostName   = "host.smolvm.internal" // resolves to HostIP = the host's 127.0.0.1
	GatewayMAC = "5a:94:ef:e4:0c:dd"
	// MTU of the user network (and of the guest's eth0, offered by the
	// device): 64 KiB frames need ~40x fewer guest exits than 1500-byte
	// ones, and nothing on the path is a real wire.
	MTU = 65520
	// DNSZone is the virtual network's own zone (host.smolvm.internal).
	DNSZone = "smolvm.internal."
)

// MACString formats a MAC as gvisor-tap-vsock and Linux print it.
func MACString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }
