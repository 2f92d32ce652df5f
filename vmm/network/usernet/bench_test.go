package usernet_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/network"
	"github.com/smolvm/smolvm/vmm/network/usernet"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// BenchmarkGuestToHostTCP: a fake guest (a gVisor netstack behind the frame
// socket pair) streams to a server on the host's 127.0.0.1 through the NAT:
// the cost of the user network itself, without a VM. MB/s per run.
func BenchmarkGuestToHostTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		got <- n
	}()
	u, err := usernet.New(network.UserConfig{MAC: guestMAC})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	g := newFakeGuest(b, u.Backend(), guestMAC)
	ack := g.lease()
	g.startStack(ack.YourIPAddr, ack.Router()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, g.stack, fullAddr(network.HostIP, uint16(ln.Addr().(*net.TCPAddr).Port)), ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	n := <-got
	el := time.Since(start)
	b.StopTimer()
	if n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("host got %d bytes, guest sent %d", n, int64(b.N)*int64(len(buf)))
	}
	b.ReportMetric(float64(n)/el.Seconds()/1e6, "MB/s-e2e")
}
