package network

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
)

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
	MTU     = 65520
	dnsZone = "smolvm.internal."
)

// UserConfig is what NewUser needs.
type UserConfig struct {
	// MAC is the guest's address; it gets the static lease GuestIP.
	MAC [6]byte
	// Forwards are bound on the host before NewUser returns.
	Forwards []PortForward
	// Log receives gvisor-tap-vsock's log lines (nil discards them). Its
	// logger is process-wide (logrus): the last NewUser sets it.
	Log io.Writer
}

// User is a running user-mode network for one guest.
type User struct {
	vn       *virtualnetwork.VirtualNetwork
	mux      http.Handler
	backend  *frameFile
	sw       net.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	forwards []PortForward
	tcp      []*tcpForward
	udp      []PortForward // exposed through gvisor-tap-vsock's forwarder
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// MACString formats a MAC as gvisor-tap-vsock and Linux print it.
func MACString(m [6]byte) string { return net.HardwareAddr(m[:]).String() }

// NewUser binds the forwards' host ports (failing with ErrPortInUse or
// ErrBadSpec before anything else starts), builds the virtual network and
// connects the guest's side of a frame socket pair to it. The caller owns
// the result and must Close it; Backend's ownership passes to the device.
func NewUser(c UserConfig) (_ *User, err error) {
	if err := CheckForwards(c.Forwards); err != nil {
		return nil, err
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	logrus.SetOutput(c.Log)

	u := &User{forwards: append([]PortForward(nil), c.Forwards...)}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			u.Close()
		}
	}()
	// Bind first: a port in use is the user's mistake, reported before the
	// VM starts.
	var udpForwards map[string]string
	for _, f := range c.Forwards {
		switch f.Proto {
		case TCP:
			ln, err := net.Listen("tcp", f.HostAddr())
			if err != nil {
				return nil, fmt.Errorf("%w: -p %s: %w", ErrPortInUse, f, err)
			}
			u.tcp = append(u.tcp, &tcpForward{spec: f, ln: ln})
		case UDP:
			// gvisor-tap-vsock binds UDP forwards itself; try the address
			// first for a clear error.
			pc, err := net.ListenPacket("udp", f.HostAddr())
			if err != nil {
				return nil, fmt.Errorf("%w: -p %s: %w", ErrPortInUse, f, err)
			}
			pc.Close()
			if udpForwards == nil {
				udpForwards = map[string]string{}
			}
			udpForwards["udp:"+f.HostAddr()] = net.JoinHostPort(GuestIP, fmt.Sprint(f.GuestPort))
		}
	}
	u.vn, err = virtualnetwork.New(&types.Configuration{
		MTU:               MTU,
		Subnet:            Subnet,
		GatewayIP:         GatewayIP,
		GatewayMacAddress: GatewayMAC,
		DHCPStaticLeases:  map[string]string{GuestIP: MACString(c.MAC)},
		DNS: []types.Zone{{
			Name: dnsZone,
			Records: []types.Record{
				{Name: "host", IP: net.ParseIP(HostIP)},
				{Name: "gateway", IP: net.ParseIP(GatewayIP)},
			},
		}},
		NAT:               map[string]string{HostIP: "127.0.0.1"},
		GatewayVirtualIPs: []string{HostIP},
		Forwards:          udpForwards,
		Protocol:          types.VfkitProtocol,
	})
	if err != nil {
		if len(udpForwards) > 0 {
			return nil, fmt.Errorf("%w: user network: %w", ErrPortInUse, err)
		}
		return nil, fmt.Errorf("network: user network: %w", err)
	}
	for _, f := range c.Forwards {
		if f.Proto == UDP {
			u.udp = append(u.udp, f)
		}
	}
	u.mux = u.vn.ServicesMux()
	if u.backend, u.sw, err = framePair(); err != nil {
		return nil, err
	}
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

// Backend carries one Ethernet frame per call (the virtio-net device's
// Backend).
type Backend interface {
	ReadFrame(p []byte) (int, error)
	WriteFrame(p []byte) error
	Close() error
}

// Backend is the device's side of the network: pass it to the virtio-net
// device, which owns it from then on.
func (u *User) Backend() Backend { return u.backend }

// Forwards returns the port forwards, as bound.
func (u *User) Forwards() []PortForward { return append([]PortForward(nil), u.forwards...) }

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
	return netip.AddrPortFrom(netip.MustParseAddr(GuestIP), p).String()
}
