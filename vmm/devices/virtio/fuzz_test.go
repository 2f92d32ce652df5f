package virtio_test

import (
	"encoding/binary"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

// FuzzTransportAccesses replays arbitrary driver behaviour: each 12-byte
// record is a BAR or configuration-space access (offset, width, value) or a
// write into guest memory (a ring or descriptor the device will read). The
// transport and the echo device must never panic or hang, whatever the
// order; status stays a byte the driver can read.
func FuzzTransportAccesses(f *testing.F) {
	rec := func(kind byte, off uint32, width byte, val uint32) []byte {
		b := make([]byte, 12)
		b[0], b[1] = kind, width
		binary.LittleEndian.PutUint32(b[4:], off)
		binary.LittleEndian.PutUint32(b[8:], val)
		return b
	}
	var seed []byte
	for _, r := range [][]byte{
		rec(0, 0x14, 1, 1), rec(0, 0x14, 1, 3), rec(0, 0x08, 4, 1), rec(0, 0x0c, 4, 1), rec(0, 0x14, 1, 11),
		rec(0, 0x16, 2, 0), rec(0, 0x20, 4, 0x10000), rec(0, 0x28, 4, 0x11000), rec(0, 0x30, 4, 0x12000),
		rec(0, 0x1c, 2, 1), rec(0, 0x14, 1, 15), rec(2, 0x11002, 2, 1), rec(0, 0x3000, 2, 0), rec(0, 0x1000, 1, 0),
		rec(1, 0x80, 2, 0x8000), rec(0, 0x4000, 4, 0xfee00000), rec(0, 0x400c, 4, 0), rec(0, 0x14, 1, 0),
	} {
		seed = append(seed, r...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 12*64 {
			ops = ops[:12*64]
		}
		d := vt.NewDriver(t, &echoDev{})
		for len(ops) >= 12 {
			kind, width := ops[0]%3, []int{1, 2, 4, 8}[ops[1]%4]
			off := uint64(binary.LittleEndian.Uint32(ops[4:]))
			val := binary.LittleEndian.Uint32(ops[8:])
			ops = ops[12:]
			var raw [8]byte
			binary.LittleEndian.PutUint32(raw[:], val)
			b := raw[:width]
			switch kind {
			case 0: // BAR
				off %= virtio.BARSize
				if off+uint64(width) > virtio.BARSize {
					continue
				}
				if val&1 == 0 {
					d.Bus.MMIOWrite(d.BAR()+off, b)
				} else {
					d.Bus.MMIORead(d.BAR()+off, b)
				}
			case 1: // configuration space, through conf1
				reg := int(off % 256)
				if width > 2 {
					d.SetConf32(reg&^3, val)
				} else {
					d.SetConf16(reg&^1, uint16(val))
				}
			case 2: // guest memory
				_ = d.Mem.Write(off%vt.MemSize, b)
			}
		}
		_ = d.Status()
		d.Trans.Close()
	})
}
