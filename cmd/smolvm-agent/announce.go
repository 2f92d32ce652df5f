package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// A clone whose network device got a new MAC tells its network: a
// gratuitous ARP for each of the interface's IPv4 addresses (peers and
// switches learn the new MAC at once), and, on request, a DHCP lease of its
// own first.

// dhcpScript is the default guest's udhcpc script (vmm/guest init.sh).
const dhcpScript = "/run/udhcpc.script"

// leaseTimeout bounds the DHCP client (3 tries, 1 s apart, in the guest).
const leaseTimeout = 10 * time.Second

// renewLease runs the guest's DHCP client once for ifname.
func renewLease(ifname string) error {
	if _, err := os.Stat(dhcpScript); err != nil {
		return fmt.Errorf("no DHCP script %s: %w", dhcpScript, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "udhcpc", "-i", ifname, "-s", dhcpScript, "-f", "-q", "-n", "-t", "3", "-T", "1").CombinedOutput()
	if err != nil {
		return fmt.Errorf("udhcpc on %s: %w: %s", ifname, err, out)
	}
	return nil
}

// errNoIPv4 means the interface has no address to announce.
var errNoIPv4 = errors.New("no IPv4 address")

// announce sends one gratuitous ARP request per IPv4 address of ifname.
func announce(ifname string) error {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return err
	}
	var ips []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ips = append(ips, n.IP.To4())
		}
	}
	if len(ips) == 0 {
		return fmt.Errorf("%s: %w", ifname, errNoIPv4)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], broadcastMAC)
	for _, ip := range ips {
		if err := unix.Sendto(fd, garpFrame(ifc.HardwareAddr, ip), 0, to); err != nil {
			return fmt.Errorf("%s: gratuitous ARP for %s: %w", ifname, ip, err)
		}
	}
	return nil
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// garpFrame is an Ethernet frame carrying a gratuitous ARP request: sender
// and target protocol address are both ip, the sender hardware address is
// mac, sent to the broadcast address (RFC 5227 section 3 "ARP Announcement").
func garpFrame(mac net.HardwareAddr, ip net.IP) []byte {
	f := make([]byte, 14+28)
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)             // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:], unix.ETH_P_IP) // protocol: IPv4
	a[4], a[5] = 6, 4                                // address lengths
	binary.BigEndian.PutUint16(a[6:], 1)             // request
	copy(a[8:14], mac)
	copy(a[14:18], ip.To4())
	// a[18:24]: target hardware address, zero
	copy(a[24:28], ip.To4())
	return f
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
