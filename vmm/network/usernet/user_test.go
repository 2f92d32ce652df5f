package usernet_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/network"
	"github.com/smolvm/smolvm/vmm/network/usernet"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

var guestMAC = [6]byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T, proto string) uint16 {
	t.Helper()
	if proto == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// userNet is what the tests need of a user-mode network, in process
// (usernet.New) or in its helper process (network.StartUser).
type userNet interface {
	Backend() network.Backend
	Forwards() []network.PortForward
	Close() error
}

// modes are the two ways a user-mode network runs. The helper is this test
// binary run again (TestMain).
var modes = []string{"in-process", "helper"}

// start starts a user-mode network in mode; the caller closes it.
func start(t *testing.T, mode string, c network.UserConfig) (userNet, error) {
	t.Helper()
	if mode == "in-process" {
		return usernet.New(c)
	}
	asHelperParent(t)
	p, err := network.StartUser(c)
	if err != nil {
		return nil, err
	}
	if err := p.Ready(10 * time.Second); err != nil {
		p.Close()
		p.Backend().Close()
		return nil, err
	}
	return p, nil
}

// forEachMode runs f as a subtest per mode.
func forEachMode(t *testing.T, f func(t *testing.T, mode string)) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { f(t, mode) })
	}
}

func newUser(t *testing.T, mode string, fw ...network.PortForward) (userNet, *fakeGuest) {
	t.Helper()
	u, err := start(t, mode, network.UserConfig{MAC: guestMAC, Forwards: fw})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Close(); err != nil {
			t.Error(err)
		}
	})
	return u, newFakeGuest(t, u.Backend(), guestMAC)
}

// leased gets the guest its lease and starts its stack.
func leased(t *testing.T, g *fakeGuest) {
	t.Helper()
	ack := g.lease()
	g.startStack(ack.YourIPAddr, ack.Router()[0])
}

func TestDHCPLease(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		u, g := newUser(t, mode)
		ack := g.lease()
		if got := ack.YourIPAddr.String(); got != network.GuestIP {
			t.Fatalf("leased %s, want %s", got, network.GuestIP)
		}
		if r := ack.Router(); len(r) != 1 || r[0].String() != network.GatewayIP {
			t.Fatalf("router %v, want %s", r, network.GatewayIP)
		}
		if d := ack.DNS(); len(d) == 0 || d[0].String() != network.GatewayIP {
			t.Fatalf("DNS %v, want %s", d, network.GatewayIP)
		}
		if m := ack.SubnetMask(); net.IP(m).String() != "255.255.255.0" {
			t.Fatalf("netmask %v", m)
		}
		in, ok := u.(*usernet.User)
		if !ok {
			return // the helper's leases are not asked for
		}
		leases, err := in.Leases()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range leases {
			found = found || (l.IP == network.GuestIP && l.MAC == network.MACString(guestMAC))
		}
		if !found {
			t.Fatalf("leases %+v lack %s -> %s", leases, network.GuestIP, network.MACString(guestMAC))
		}
	})
}

func TestDNSHostName(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		_, g := newUser(t, mode)
		leased(t, g)
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return gonet.DialUDP(g.stack, nil, ptr(fullAddr(network.GatewayIP, 53)), ipv4.ProtocolNumber)
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tc := range []struct{ name, want string }{
			{network.HostName, network.HostIP},
			{"gateway.smolvm.internal", network.GatewayIP},
		} {
			addrs, err := r.LookupHost(ctx, tc.name)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(addrs) != 1 || addrs[0] != tc.want {
				t.Fatalf("%s resolves to %v, want %s", tc.name, addrs, tc.want)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

// The guest reaches a server on the host's 127.0.0.1 through HostIP.
func TestGuestToHostLoopback(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					line, _ := bufio.NewReader(c).ReadString('\n')
					fmt.Fprintf(c, "host got %s", line)
				}()
			}
		}()
		_, g := newUser(t, mode)
		leased(t, g)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		c, err := gonet.DialContextTCP(ctx, g.stack, fullAddr(network.HostIP, port), ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "hello from the guest\n")
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != "host got hello from the guest\n" {
			t.Fatalf("reply %q, %v", got, err)
		}
	})
}

// A TCP forward on the host reaches a server in the guest; a large
// transfer arrives intact both ways.
func TestTCPPortForward(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		hp := freePort(t, "tcp")
		f, err := network.ParsePortForward(fmt.Sprintf("%d:8080", hp))
		if err != nil {
			t.Fatal(err)
		}
		u, g := newUser(t, mode, f)
		if fw := u.Forwards(); len(fw) != 1 || fw[0] != f {
			t.Fatalf("Forwards %v", fw)
		}
		leased(t, g)
		gl, err := gonet.ListenTCP(g.stack, fullAddr(network.GuestIP, 8080), ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer gl.Close()
		go func() {
			for {
				c, err := gl.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					io.Copy(c, c) // echo until the host half-closes
				}()
			}
		}()
		c, err := net.DialTimeout("tcp", f.HostAddr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		payload := []byte(strings.Repeat("smolvm port forward ", 20000)) // 400 KB
		go func() {
			c.Write(payload)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(payload) {
			t.Fatalf("echo through the forward: %d bytes back of %d", len(got), len(payload))
		}
	})
}

// A UDP forward reaches the guest and the guest's reply comes back.
func TestUDPPortForward(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		hp := freePort(t, "udp")
		f, err := network.ParsePortForward(fmt.Sprintf("127.0.0.1:%d:5353/udp", hp))
		if err != nil {
			t.Fatal(err)
		}
		_, g := newUser(t, mode, f)
		leased(t, g)
		gc, err := gonet.DialUDP(g.stack, ptr(fullAddr(network.GuestIP, 5353)), nil, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer gc.Close()
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := gc.ReadFrom(buf)
				if err != nil {
					return
				}
				gc.WriteTo(append([]byte("guest: "), buf[:n]...), from)
			}
		}()
		c, err := net.Dial("udp", f.HostAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 1500)
		for try := 0; ; try++ { // UDP: the first datagram may race the guest's ARP
			c.Write([]byte("ping"))
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err == nil {
				if got := string(buf[:n]); got != "guest: ping" {
					t.Fatalf("reply %q", got)
				}
				return
			}
			if try == 5 {
				t.Fatalf("no UDP reply through the forward: %v", err)
			}
		}
	})
}

func TestPortInUse(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		free := freePort(t, "tcp")
		tcpBusy := uint16(ln.Addr().(*net.TCPAddr).Port)
		udpBusy := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		lo := netip.MustParseAddr("127.0.0.1")
		for _, tc := range []struct {
			name string
			fw   []network.PortForward
			want error
		}{
			{"tcp busy", []network.PortForward{{HostIP: lo, HostPort: free, GuestPort: 1, Proto: network.TCP}, {HostIP: lo, HostPort: tcpBusy, GuestPort: 80, Proto: network.TCP}}, network.ErrPortInUse},
			{"udp busy", []network.PortForward{{HostIP: lo, HostPort: udpBusy, GuestPort: 53, Proto: network.UDP}}, network.ErrPortInUse},
			{"twice", []network.PortForward{{HostIP: lo, HostPort: free, GuestPort: 1, Proto: network.TCP}, {HostIP: lo, HostPort: free, GuestPort: 2, Proto: network.TCP}}, network.ErrBadSpec},
		} {
			t.Run(tc.name, func(t *testing.T) {
				u, err := start(t, mode, network.UserConfig{MAC: guestMAC, Forwards: tc.fw})
				if err == nil {
					u.Close()
					t.Fatal("NewUser succeeded")
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
				// The forward that was bound before the failure is released.
				l, err := net.Listen("tcp", netip.AddrPortFrom(lo, free).String())
				if err != nil {
					t.Fatalf("port %d still bound after a failed NewUser: %v", free, err)
				}
				l.Close()
			})
		}
	})
}

// Close releases forwarded ports and stops the frame pump.
func TestCloseReleasesPorts(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		hp := freePort(t, "tcp")
		up := freePort(t, "udp")
		lo := netip.MustParseAddr("127.0.0.1")
		u, err := start(t, mode, network.UserConfig{MAC: guestMAC, Forwards: []network.PortForward{
			{HostIP: lo, HostPort: hp, GuestPort: 80, Proto: network.TCP},
			{HostIP: lo, HostPort: up, GuestPort: 53, Proto: network.UDP},
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Backend().Close()
		if err := u.Close(); err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", netip.AddrPortFrom(lo, hp).String())
		if err != nil {
			t.Fatalf("tcp port still bound: %v", err)
		}
		l.Close()
		p, err := net.ListenPacket("udp", netip.AddrPortFrom(lo, up).String())
		if err != nil {
			t.Fatalf("udp port still bound: %v", err)
		}
		p.Close()
		if err := u.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// The backend may be closed twice (the device and a failed setup both own
// it at times); a frame written to a closed backend is an error.
func TestBackendCloseTwice(t *testing.T) {
	forEachMode(t, func(t *testing.T, mode string) {
		u, err := start(t, mode, network.UserConfig{MAC: guestMAC})
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		be := u.Backend()
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
		if err := be.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := be.WriteFrame(make([]byte, 60)); err == nil {
			t.Fatal("write to a closed backend succeeded")
		}
	})
}
