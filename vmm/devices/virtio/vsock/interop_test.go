package vsock

import (
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/smolvm/smolvm/agent"
)

// TestAgentDialHybrid: the host client smolvm exec uses speaks this
// device's handshake.
func TestAgentDialHybrid(t *testing.T) {
	m := newTestMux(t, MuxConfig{})
	g := newFakeGuest(t, m, 64<<10, 4096)
	ctx := testCtx(t)
	ln := g.listen(agent.ExecPort)
	c, err := agent.DialHybrid(ctx, m.cfg.Path, agent.ExecPort)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gs := accept(ctx, t, ln)
	c.Write([]byte("frame"))
	buf := make([]byte, 5)
	if n, err := gs.Read(ctx, buf); err != nil || string(buf[:n]) != "frame" {
		t.Fatalf("guest got %q, %v", buf[:n], err)
	}
	gs.Write(ctx, []byte("reply"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "reply" {
		t.Fatalf("host got %q, %v", buf, err)
	}
	if _, err := agent.DialHybrid(ctx, m.cfg.Path, 4242); !errors.Is(err, agent.ErrNotListening) {
		t.Errorf("dial to a port nobody listens on: %v, want agent.ErrNotListening", err)
	}
}

// FuzzMuxPackets feeds arbitrary packet sequences from the guest to a Mux
// (no host side: every connection attempt is refused) and drains what it
// answers: no panic, no hang, every answer well-formed.
func FuzzMuxPackets(f *testing.F) {
	req := Header{SrcCID: GuestCID, DstCID: HostCID, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRequest}
	rw := req
	rw.Op, rw.Len = OpRW, 4
	f.Add(append(req.Bytes(), append(rw.Bytes(), 1, 2, 3, 4)...))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := NewMux(MuxConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		out := make([]byte, 256)
		for len(b) >= HeaderSize {
			h, _ := DecodeHeader(b)
			b = b[HeaderSize:]
			n := min(int(h.Len%512), len(b))
			payload := b[:n]
			b = b[n:]
			if h.Len%2 == 0 { // half the packets keep a consistent length
				h.Len = uint32(n)
			}
			if binary.LittleEndian.Uint16(b0(b))%3 == 0 {
				h.SrcCID, h.DstCID = GuestCID, HostCID
			}
			m.HandleTx(h, payload)
			for i := 0; i < 1000; i++ {
				k := m.NextRx(out)
				if k == 0 {
					break
				}
				p, err := DecodeHeader(out[:k])
				if err != nil || p.DstCID != GuestCID || int(p.Len) != k-HeaderSize {
					t.Fatalf("answer %v (%d bytes): %v", p, k, err)
				}
			}
		}
		if s := m.Stats(); s.Conns != 0 {
			t.Fatalf("%d connections open without a host side", s.Conns)
		}
	})
}

// b0 returns the first two bytes of b, zero-padded.
func b0(b []byte) []byte {
	var x [2]byte
	copy(x[:], b)
	return x[:]
}
