package vsock

import (
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

// BenchmarkStream moves data one way over one connection, straight through
// the Mux or through the virtio device and its queues, and reports MB/s of
// payload and packets per MB.
func BenchmarkStream(b *testing.B) {
	for _, bc := range []struct {
		name   string
		device bool
		up     bool // guest -> host
	}{
		{"mux/host-to-guest", false, false},
		{"mux/guest-to-host", false, true},
		{"device/host-to-guest", true, false},
		{"device/guest-to-host", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var m *Mux
			var link guestLink
			var dev *Device
			if bc.device {
				dev = newTestDevice(b, MuxConfig{})
				m = dev.Mux()
				link = newVirtioLink(b, dev, virtiotest.Options{Features: 1 << 29})
			} else {
				m = newTestMux(b, MuxConfig{})
				link = m
			}
			g := newFakeGuest(b, link, 256<<10, HeaderSize+4096)
			ctx := testCtx(b)
			hc, gs := openPair(b, ctx, m, g, true, 52)
			const chunk = 4 << 20
			data := randomBytes(chunk, 9)
			buf := make([]byte, 64<<10)
			b.SetBytes(chunk)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if bc.up {
					go gs.Write(ctx, data)
					for got := 0; got < chunk; {
						n, err := hc.r.Read(buf)
						if err != nil {
							b.Fatal(err)
						}
						got += n
					}
				} else {
					go hc.w.Write(data)
					for got := 0; got < chunk; {
						n, err := gs.Read(ctx, buf)
						if err != nil {
							b.Fatal(err)
						}
						got += n
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(chunk)*float64(b.N)/time.Since(start).Seconds()/1e6, "MB/s")
			if dev != nil {
				s := dev.Stats()
				b.ReportMetric(float64(s.RxPackets+s.TxPackets)/(float64(chunk)*float64(b.N)/1e6), "packets/MB")
			}
		})
	}
}
