package network

import "fmt"

// GuestRenewScript is what a restored clone runs in the default guest
// (through the agent) to take the MAC its new device and network were built
// with: the interface gets the address, the DHCP lease is renewed (the user
// network's static lease for that MAC gives GuestIP again) and a gratuitous
// ARP announces the clone. Linux reads a virtio-net MAC only at probe, so
// the device's new MAC alone changes nothing in a running guest.
// /run/udhcpc.script is the default guest's DHCP script (vmm/guest).
func GuestRenewScript(mac [6]byte) string {
	return fmt.Sprintf(`set -e
ip link set eth0 down
ip link set eth0 address %s
ip link set eth0 up
udhcpc -i eth0 -s /run/udhcpc.script -f -q -n -t 3 -T 1
arping -U -c 1 -I eth0 %s >/dev/null 2>&1 || true
`, MACString(mac), GuestIP)
}
