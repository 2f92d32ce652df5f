package pci

import (
	"testing"

	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

func dtIn32(p dt.Ports, port uint16) uint32 { return dt.In32(p, port) }

// FuzzConfigCycles feeds arbitrary port accesses to the conf1 ports: no
// panic, the identity registers never change, and every registered BAR
// range belongs to a BAR the function declares.
func FuzzConfigCycles(f *testing.F) {
	f.Add([]byte{0x02, 0x80, 0x00, 0x18, 0x04, 0x06, 0xff, 0xff, 0xff, 0xff, 0x01, 0x04, 0x02, 0x00, 0x00, 0x00})
	f.Add([]byte{0x02, 0x80, 0x00, 0x18, 0x18, 0x06, 0x00, 0x00, 0x00, 0xd0, 0x02, 0x80, 0x00, 0x18, 0x04, 0x06, 0x07, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		h, bus, c := newHost(t)
		ep := newFakeEndpoint(t, 0x1042)
		if err := h.AddDevice(fakeSlot, ep); err != nil {
			t.Fatal(err)
		}
		for len(ops) >= 6 {
			op, port := ops[0], uint16(0xcf8)+uint16(ops[1]&7)
			val := ops[2:6]
			ops = ops[6:]
			if op&0x40 != 0 {
				// An enabled address aimed at the fake, so cycles reach it.
				val = []byte{val[0] & 0xfc, fakeSlot << 3, 0, 0x80}
			}
			size := []int{1, 2, 4, 4}[op>>1&3]
			switch op >> 3 & 1 {
			case 0:
				bus.PortOut(port, val[:size])
			case 1:
				bus.PortIn(port, make([]byte, size))
			}
		}
		if v := c.read(fakeSlot, OffVendorID, 4); v != 0x10421af4 {
			t.Fatalf("ids changed to %#x", v)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, fn := range h.slots {
			if fn == nil {
				continue
			}
			for i, m := range fn.maps {
				b := fn.cfg.BAR(i)
				if m.active && (b.Kind == BARNone || m.size != b.Size || m.io != (b.Kind == BARIO)) {
					t.Fatalf("slot %d BAR %d mapped as %+v but declared %+v", fn.slot, i, m, b)
				}
			}
		}
	})
}
