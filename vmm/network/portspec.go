package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Sentinel errors.
var (
	// ErrBadSpec: a -p or --net value does not parse.
	ErrBadSpec = errors.New("network: bad specification")
	// ErrPortInUse: a forward's host address could not be bound.
	ErrPortInUse = errors.New("network: host port unavailable")
	// ErrClosed: the network is closed.
	ErrClosed = errors.New("network: closed")
)

// Proto is a forward's transport protocol.
type Proto string

// Protocols a forward may use.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// PortForward sends connections (TCP) or datagrams (UDP) arriving at
// HostIP:HostPort on the host to the guest's GuestPort.
type PortForward struct {
	HostIP    netip.Addr // 127.0.0.1 unless given
	HostPort  uint16
	GuestPort uint16
	Proto     Proto
}

// String is the spec in the form ParsePortForward reads.
func (f PortForward) String() string {
	ip := f.HostIP.String()
	if f.HostIP.Is6() {
		ip = "[" + ip + "]"
	}
	return fmt.Sprintf("%s:%d:%d/%s", ip, f.HostPort, f.GuestPort, f.Proto)
}

// Published is the forward as `smolvm ps` shows it, Docker's
// "HOSTIP:HOSTPORT->GUESTPORT/PROTO" ("[::1]:2222->22/tcp" for IPv6).
func (f PortForward) Published() string {
	return fmt.Sprintf("%s->%d/%s", f.HostAddr(), f.GuestPort, f.Proto)
}

// HostAddr is HOSTIP:HOSTPORT.
func (f PortForward) HostAddr() string {
	return netip.AddrPortFrom(f.HostIP, f.HostPort).String()
}

// ParsePortForward reads Docker's form [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp].
// HOSTIP is an IPv4 address or a bracketed IPv6 one; it defaults to
// 127.0.0.1 (a VM's services are not exposed to other machines unless
// asked). Ports are 1-65535.
func ParsePortForward(s string) (PortForward, error) {
	bad := func(why string) (PortForward, error) {
		return PortForward{}, fmt.Errorf("%w: -p %q: %s (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp])", ErrBadSpec, s, why)
	}
	f := PortForward{Proto: TCP, HostIP: netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch p := Proto(rest[i+1:]); p {
		case TCP, UDP:
			f.Proto = p
		default:
			return bad(fmt.Sprintf("protocol %q is not tcp or udp", rest[i+1:]))
		}
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return bad("no GUESTPORT")
	}
	guest, hostPart := rest[i+1:], rest[:i]
	host := hostPart
	if j := strings.LastIndexByte(hostPart, ':'); j >= 0 {
		ipStr := hostPart[:j]
		host = hostPart[j+1:]
		if strings.HasPrefix(ipStr, "[") && strings.HasSuffix(ipStr, "]") {
			ipStr = ipStr[1 : len(ipStr)-1]
		} else if strings.Contains(ipStr, ":") {
			return bad("an IPv6 HOSTIP must be in brackets")
		}
		ip, err := netip.ParseAddr(ipStr)
		if err != nil || ip.Zone() != "" {
			return bad(fmt.Sprintf("HOSTIP %q is not an IP address", ipStr))
		}
		f.HostIP = ip.Unmap()
	}
	var err error
	if f.HostPort, err = parsePort(host); err != nil {
		return bad("HOSTPORT " + err.Error())
	}
	if f.GuestPort, err = parsePort(guest); err != nil {
		return bad("GUESTPORT " + err.Error())
	}
	return f, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return uint16(n), nil
}

// CheckForwards refuses two forwards of the same protocol on one host
// address.
func CheckForwards(fs []PortForward) error {
	seen := map[string]bool{}
	for _, f := range fs {
		k := string(f.Proto) + " " + f.HostAddr()
		if seen[k] {
			return fmt.Errorf("%w: -p %s: host address %s/%s is forwarded twice", ErrBadSpec, f, f.HostAddr(), f.Proto)
		}
		seen[k] = true
	}
	return nil
}

// Mode is how the guest is networked.
type Mode struct {
	Kind string // "user", "tap" or "none"
	Tap  string // interface name for "tap"
}

// ParseMode reads --net: "user" (the default), "none" or "tap:IFNAME".
func ParseMode(s string) (Mode, error) {
	switch {
	case s == "" || s == "user":
		return Mode{Kind: "user"}, nil
	case s == "none":
		return Mode{Kind: "none"}, nil
	case strings.HasPrefix(s, "tap:"):
		name := s[4:]
		if name == "" || len(name) >= 16 || strings.ContainsAny(name, "/ \t\n:") {
			return Mode{}, fmt.Errorf("%w: --net %q: tap interface name must be 1-15 characters without '/', ':' or spaces", ErrBadSpec, s)
		}
		return Mode{Kind: "tap", Tap: name}, nil
	}
	return Mode{}, fmt.Errorf("%w: --net %q: want user, none or tap:IFNAME", ErrBadSpec, s)
}
