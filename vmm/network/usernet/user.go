package usernet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
	"github.com/sirupsen/logrus"

	"github.com/smolvm/smolvm/vmm/network"
)

// User is a running user-mode network for one guest.
type User struct {
	vn       *virtualnetwork.VirtualNetwork
	mux      http.Handler
	backend  network.Backend // New's device end; nil after Serve
	sw       net.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	forwards []network.PortForward
	tcp      []*tcpForward
	udp      []network.PortForward // exposed through gvisor-tap-vsock's forwarder
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New runs a user-mode network in this process: it binds the forwards'
// host ports (network.BindForwards: ErrPortInUse, ErrBadSpec), then serves
// the switch's end of a new frame socket pair. The caller owns the result
// and must Close it; Backend's ownership passes to whoever plays the guest.
func New(c network.UserConfig) (*User, error) {
	lns, err := network.BindForwards(c.Forwards)
	if err != nil {
		return nil, err
	}
	dev, sw, err := network.FramePair()
	if err != nil {
		network.CloseListeners(lns)
		return nil, err
	}
	u, err := Serve(c, sw, lns)
	if err != nil {
		dev.Close()
		return nil, err
	}
	u.backend = dev
	return u, nil
}

// Serve runs the virtual network on sw (the switch's end of a frame socket
// pair) with tcp, the bound listeners of c's TCP forwards in their order.
// It owns sw and tcp from the call on, on error too.
func Serve(c network.UserConfig, sw net.Conn, tcp []net.Listener) (_ *User, err error) {
	if c.Log == nil {
		c.Log = io.Discard
	}
	// gvisor-tap-vsock logs through logrus, which is process-wide: the
	// last Serve in a process sets it.
	logrus.SetOutput(c.Log)

	u := &User{forwards: append([]network.PortForward(nil), c.Forwards...), sw: sw}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			u.Close()
		}
	}()
	var udpForwards map[string]string
	for _, f := range c.Forwards {
		switch f.Proto {
		case network.TCP:
			if len(tcp) == 0 {
				return nil, fmt.Errorf("%w: -p %s: no listener", network.ErrBadSpec, f)
			}
			u.tcp = append(u.tcp, &tcpForward{spec: f, ln: tcp[0]})
			tcp = tcp[1:]
		case network.UDP:
			if udpForwards == nil {
				udpForwards = map[string]string{}
			}
			udpForwards["udp:"+f.HostAddr()] = net.JoinHostPort(network.GuestIP, fmt.Sprint(f.GuestPort))
			u.udp = append(u.udp, f)
		}
	}
	if len(tcp) > 0 {
		network.CloseListeners(tcp)
		return nil, fmt.Errorf("%w: %d listeners more than TCP forwards", network.ErrBadSpec, len(tcp))
	}
	u.vn, err = virtualnetwork.New(&types.Configuration{
		MTU:               network.MTU,
		Subnet:            network.Subnet,
		GatewayIP:         network.GatewayIP,
		GatewayMacAddress: network.GatewayMAC,
		DHCPStaticLeases:  map[string]string{network.GuestIP: network.MACString(c.MAC)},
		DNS: []types.Zone{{
			Name: network.DNSZone,
			Records: []types.Record{
				{Name: "host", IP: net.ParseIP(network.HostIP)},
				{Name: "gateway", IP: net.ParseIP(network.GatewayIP)},
			},
		}},
		NAT:               map[string]string{network.HostIP: "127.0.0.1"},
		GatewayVirtualIPs: []string{network.HostIP},
		Forwards:          udpForwards,
		Protocol:          types.VfkitProtocol,
	})
	if err != nil {
		u.udp = nil // none was exposed
		if len(udpForwards) > 0 {
			return nil, fmt.Errorf("%w: user network: %w", network.ErrPortInUse, err)
		}
		return nil, fmt.Errorf("network: user network: %w", err)
	}
	u.mux = u.vn.ServicesMux()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		// Returns when the socket pair is closed.
		_ = u.vn.AcceptVfkit(u.ctx, u.sw)
	}()
	for _, t := range u.tcp {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			t.serve(u.ctx, u.vn)
		}()
	}
	return u, nil
}

// Backend is the device's side of a network made by New (nil after Serve).
func (u *User) Backend() network.Backend { return u.backend }

// Forwards returns the port forwards, as bound.
func (u *User) Forwards() []network.PortForward {
	return append([]network.PortForward(nil), u.forwards...)
}

// Lease is one DHCP lease of the virtual network.
type Lease struct {
	IP  string
	MAC string
}

// Leases returns the DHCP leases handed out (and reserved: the gateway and
// the guest's static lease appear once leased).
func (u *User) Leases() ([]Lease, error) {
	var m map[string]string
	if err := u.call(http.MethodGet, "/leases", nil, &m); err != nil {
		return nil, err
	}
	var out []Lease
	for ip, mac := range m {
		out = append(out, Lease{IP: ip, MAC: mac})
	}
	return out, nil
}

// call serves one request on the virtual network's services mux in
// process.
func (u *User) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(u.ctx, method, "http://smolvm"+path, rd)
	if err != nil {
		return err
	}
	rec := &memResponse{header: http.Header{}, code: http.StatusOK}
	u.mux.ServeHTTP(rec, req)
	if rec.code != http.StatusOK {
		return fmt.Errorf("network: %s %s: %d %s", method, path, rec.code, bytes.TrimSpace(rec.body.Bytes()))
	}
	if out != nil {
		return json.Unmarshal(rec.body.Bytes(), out)
	}
	return nil
}

// memResponse is an http.ResponseWriter into memory.
type memResponse struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (r *memResponse) Header() http.Header         { return r.header }
func (r *memResponse) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *memResponse) WriteHeader(code int)        { r.code = code }

// closeWait bounds how long Close waits for its goroutines.
const closeWait = 5 * time.Second

// Close stops the forwards (host listeners and their connections), detaches
// the guest from the switch and waits for smolvm's goroutines. It does not
// close the Backend (the device does).
func (u *User) Close() error {
	u.closeOnce.Do(func() {
		u.cancel()
		var errs []error
		for _, t := range u.tcp {
			errs = append(errs, t.close())
		}
		if u.mux != nil {
			for _, f := range u.udp {
				errs = append(errs, u.call(http.MethodPost, "/services/forwarder/unexpose",
					types.UnexposeRequest{Local: f.HostAddr(), Protocol: types.UDP}, nil))
			}
		}
		if u.sw != nil {
			// cancel may already have closed the switch's connection:
			// closing it again is not a failure.
			if err := u.sw.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
		done := make(chan struct{})
		go func() { u.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(closeWait):
			errs = append(errs, fmt.Errorf("network: goroutines still running %v after close", closeWait))
		}
		u.closeErr = errors.Join(errs...)
	})
	return u.closeErr
}

// guestAddr is the guest's address for port p.
func guestAddr(p uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(network.GuestIP), p).String()
}
