package vsock

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

// restoreLink snapshots and restores dev under link's transport, as a
// restored machine does (device state, then transport state).
func restoreLink(t *testing.T, dev *Device, link *virtioLink) {
	t.Helper()
	if err := link.d.Trans.Pause(); err != nil {
		t.Fatal(err)
	}
	st, err := link.d.Trans.Save()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Restore(dev.Save()); err != nil {
		t.Fatal(err)
	}
	if err := link.d.Trans.Restore(st); err != nil {
		t.Fatal(err)
	}
	link.d.Trans.Resume()
}

// dialAsync is a host client (agent.DialHybrid's part): CONNECT, then the
// OK line, delivered on the channel (nil error: connected).
func dialAsync(t *testing.T, m *Mux, port uint32) (net.Conn, *bufio.Reader, <-chan error) {
	t.Helper()
	c, err := net.Dial("unix", m.cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(c)
	done := make(chan error, 1)
	go func() {
		if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
			done <- err
			return
		}
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "OK ") {
			err = fmt.Errorf("no OK line: %q, %v", line, err)
		}
		done <- err
	}()
	return c, br, done
}

// TestDeviceRestoreHoldsHostConnects: after a restore, a host client's
// connection reaches the guest only once the guest has acted on the
// TRANSPORT_RESET (posted its event buffer again). Linux acts on that event
// in a work item of its own, which can run after the rx work that accepted
// a new connection; it then marks every connected socket closed and tells
// the host nothing. A connection accepted before that dies silently and
// the host waits for an answer that never comes: the restored clone's
// identity handshake that hung (agent: identity: read ... i/o timeout).
func TestDeviceRestoreHoldsHostConnects(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    virtiotest.Options
	}{
		{"msix", virtiotest.Options{}},
		{"event-idx", virtiotest.Options{Features: virtio.FeatureEventIdx}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newTestDevice(t, MuxConfig{ConnectTimeout: 10 * time.Second})
			link := newVirtioLink(t, dev, tc.o)
			g := newFakeGuest(t, link, 64<<10, HeaderSize+MaxPayload)
			link.mu.Lock()
			link.onReset = g.transportReset
			link.mu.Unlock()
			ctx := testCtx(t)
			ln := g.listen(52)

			link.holdEvents() // the guest's event work runs late
			restoreLink(t, dev, link)
			hc, br, dialed := dialAsync(t, dev.Mux(), 52)
			var gs *gsock
			select {
			case gs = <-ln:
				t.Errorf("the guest got a connection before it acted on the transport reset")
			case <-time.After(300 * time.Millisecond):
			}
			waitFor(t, "TRANSPORT_RESET delivered", func() bool { return dev.Stats().EventsSent == 1 })
			link.releaseEvents()
			if gs == nil {
				gs = accept(ctx, t, ln)
			}
			if err := <-dialed; err != nil {
				t.Fatalf("host client: %v", err)
			}
			// The exchange the identity handshake makes: a request, then
			// the guest's answer.
			roundTrip(ctx, t, hc, br, gs, "request", "answer", " (socket reset by the late TRANSPORT_RESET?)")
			if s := dev.Stats(); s.ResetAcks != 1 || s.ResetAckTimeouts != 0 {
				t.Errorf("stats %+v: want the reset acknowledged once, no timeout", s)
			}
			if dev.Mux().Holding() {
				t.Error("requests still held after the acknowledgement")
			}
		})
	}
}

// TestDeviceRestoreAckTimeout: a guest that never acts on the reset holds
// host connections up to resetAckTimeout, not for ever.
func TestDeviceRestoreAckTimeout(t *testing.T) {
	old := resetAckTimeout
	resetAckTimeout = 300 * time.Millisecond
	t.Cleanup(func() { resetAckTimeout = old })
	dev := newTestDevice(t, MuxConfig{})
	link := newVirtioLink(t, dev, virtiotest.Options{})
	g := newFakeGuest(t, link, 64<<10, HeaderSize+MaxPayload)
	ln := g.listen(52)
	link.holdEvents() // never released
	restoreLink(t, dev, link)
	start := time.Now()
	_, _, dialed := dialAsync(t, dev.Mux(), 52)
	if err := <-dialed; err != nil {
		t.Fatalf("host client: %v", err)
	}
	accept(testCtx(t), t, ln)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("connected after %v: not held", d)
	}
	if s := dev.Stats(); s.ResetAckTimeouts != 1 || s.ResetAcks != 0 {
		t.Errorf("stats %+v: want one timeout", s)
	}
}

// TestDeviceRestoreHeldConnectTimeout: a held connection whose connect
// timeout passes is closed without an OK and without an RST to a guest
// that never heard of it.
func TestDeviceRestoreHeldConnectTimeout(t *testing.T) {
	dev := newTestDevice(t, MuxConfig{ConnectTimeout: 200 * time.Millisecond})
	link := newVirtioLink(t, dev, virtiotest.Options{})
	g := newFakeGuest(t, link, 64<<10, HeaderSize+MaxPayload)
	g.listen(52)
	link.holdEvents()
	restoreLink(t, dev, link)
	_, _, dialed := dialAsync(t, dev.Mux(), 52)
	if err := <-dialed; err == nil {
		t.Fatal("a held connection got an OK")
	}
	if s := dev.Mux().Stats(); s.Resets != 0 || s.Conns != 0 {
		t.Errorf("mux stats %+v: want no RST and an empty table", s)
	}
}

// TestDeviceRestoreNewPorts: a restored machine's device is new, but its
// first host connection must not reuse the pair of ports of the snapshot's
// first one (firstHostPort to the agent's port): the guest may still hold
// that socket (reset, not yet closed by its program) and would refuse the
// REQUEST with RST (seen in the lab: TestKVMVsockRestore's CONNECT after
// the restore, 4 of 5 runs).
func TestDeviceRestoreNewPorts(t *testing.T) {
	alloc := func(d *Device) uint32 {
		d.mux.mu.Lock()
		defer d.mux.mu.Unlock()
		return d.mux.allocPort(52).local
	}
	if p := alloc(newTestDevice(t, MuxConfig{})); p != firstHostPort {
		t.Fatalf("a booted machine's first host port %d, want %d", p, firstHostPort)
	}
	seen := map[uint32]bool{}
	for range 3 {
		restored := newTestDevice(t, MuxConfig{})
		if err := restored.Restore(restored.Save()); err != nil {
			t.Fatal(err)
		}
		p := alloc(restored)
		if p < firstHostPort || p == firstHostPort || seen[p] {
			t.Errorf("a restored machine's first host port %d: want one above %d that no other restore used", p, firstHostPort)
		}
		seen[p] = true
	}
}
