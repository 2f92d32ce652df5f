package usernet_test

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/smolvm/smolvm/vmm/network"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// fakeGuest stands where the virtio-net driver would: it owns the Backend's
// frames. Until startStack it hands them to the test raw (for DHCP, done by
// hand as a guest's udhcpc does); afterwards a gvisor netstack with the
// leased address plays the guest's TCP/IP.
type fakeGuest struct {
	t     testing.TB
	be    network.Backend
	mac   [6]byte
	in    chan []byte
	ctx   context.Context
	stack *stack.Stack
	ep    *channel.Endpoint
}

func newFakeGuest(t testing.TB, be network.Backend, mac [6]byte) *fakeGuest {
	ctx, cancel := context.WithCancel(context.Background())
	g := &fakeGuest{t: t, be: be, mac: mac, in: make(chan []byte, 256), ctx: ctx}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := be.ReadFrame(buf)
			if err != nil {
				return
			}
			select {
			case g.in <- append([]byte(nil), buf[:n]...):
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		be.Close()
		if g.ep != nil {
			g.ep.Close()
		}
		if g.stack != nil {
			g.stack.Close()
			g.stack.Wait()
		}
		<-done
	})
	return g
}

// recv waits for a frame that match accepts.
func (g *fakeGuest) recv(match func([]byte) bool) []byte {
	g.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-g.in:
			if match(f) {
				return f
			}
		case <-timeout:
			g.t.Fatal("no matching frame from the network")
			return nil
		}
	}
}

// dhcpFrame wraps a DHCP message in UDP 68->67, IPv4 0.0.0.0 ->
// 255.255.255.255 and a broadcast Ethernet frame.
func (g *fakeGuest) dhcpFrame(m *dhcpv4.DHCPv4) []byte {
	payload := m.ToBytes()
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(g.mac[:]), DstAddr: header.EthernetBroadcastAddress, Type: ipv4.ProtocolNumber,
	})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(udp.ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{}), DstAddr: tcpip.AddrFrom4([4]byte{255, 255, 255, 255}),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: 68, DstPort: 67, Length: uint16(len(u))})
	copy(u[header.UDPMinimumSize:], payload)
	return f
}

// dhcpReply waits for a DHCP message of type want to this guest.
func (g *fakeGuest) dhcpReply(want dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	g.t.Helper()
	var m *dhcpv4.DHCPv4
	g.recv(func(f []byte) bool {
		if len(f) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize ||
			binary.BigEndian.Uint16(f[12:]) != uint16(ipv4.ProtocolNumber) {
			return false
		}
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.Protocol() != uint8(udp.ProtocolNumber) {
			return false
		}
		u := header.UDP(ip.Payload())
		if u.DestinationPort() != 68 {
			return false
		}
		msg, err := dhcpv4.FromBytes(u.Payload())
		if err != nil || msg.MessageType() != want || [6]byte(msg.ClientHWAddr) != g.mac {
			return false
		}
		m = msg
		return true
	})
	return m
}

// lease does DISCOVER/OFFER/REQUEST/ACK and returns the ACK.
func (g *fakeGuest) lease() *dhcpv4.DHCPv4 {
	g.t.Helper()
	disc, err := dhcpv4.NewDiscovery(net.HardwareAddr(g.mac[:]))
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.be.WriteFrame(g.dhcpFrame(disc)); err != nil {
		g.t.Fatal(err)
	}
	offer := g.dhcpReply(dhcpv4.MessageTypeOffer)
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.be.WriteFrame(g.dhcpFrame(req)); err != nil {
		g.t.Fatal(err)
	}
	return g.dhcpReply(dhcpv4.MessageTypeAck)
}

// startStack brings up a netstack at ip/24 with a default route via gw and
// pumps frames between it and the backend.
func (g *fakeGuest) startStack(ip, gw net.IP) {
	g.t.Helper()
	g.ep = channel.New(512, network.MTU, tcpip.LinkAddress(g.mac[:]))
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	g.stack = s
	if err := s.CreateNIC(1, ethernet.New(g.ep)); err != nil {
		g.t.Fatal(err)
	}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddrFrom4Slice(ip.To4()).WithPrefix(),
	}, stack.AddressProperties{}); err != nil {
		g.t.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4Slice(gw.To4()), NIC: 1}})
	go func() { // stack -> network
		for {
			pkt := g.ep.ReadContext(g.ctx)
			if pkt == nil {
				return
			}
			b := pkt.ToView().AsSlice()
			err := g.be.WriteFrame(b)
			pkt.DecRef()
			if err != nil {
				return
			}
		}
	}()
	go func() { // network -> stack
		for {
			select {
			case f := <-g.in:
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
				g.ep.InjectInbound(0, pkt)
				pkt.DecRef()
			case <-g.ctx.Done():
				return
			}
		}
	}()
}

func fullAddr(ip string, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4Slice(net.ParseIP(ip).To4()), Port: port}
}
