package virtio_test

import (
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

func putDesc(mem []byte, at uint64, addr uint64, n uint32, flags, next uint16) {
	binary.LittleEndian.PutUint64(mem[at:], addr)
	binary.LittleEndian.PutUint32(mem[at+8:], n)
	binary.LittleEndian.PutUint16(mem[at+12:], flags)
	binary.LittleEndian.PutUint16(mem[at+14:], next)
}

func TestParseChain(t *testing.T) {
	const table = 0x100
	for _, tc := range []struct {
		name     string
		setup    func(m []byte)
		indirect bool
		want     error
		segs     int
		r, w     uint64
	}{
		{"single", func(m []byte) { putDesc(m, table, 0x1000, 10, 0, 0) }, false, nil, 1, 10, 0},
		{"read+write", func(m []byte) {
			putDesc(m, table, 0x1000, 10, virtio.DescNext, 3)
			putDesc(m, table+3*16, 0x2000, 20, virtio.DescWrite, 0)
		}, false, nil, 2, 10, 20},
		{"zero-length skipped", func(m []byte) {
			putDesc(m, table, 0x1000, 0, virtio.DescNext, 1)
			putDesc(m, table+16, 0x2000, 5, virtio.DescWrite, 0)
		}, false, nil, 1, 0, 5},
		{"indirect", func(m []byte) {
			putDesc(m, table, 0x3000, 32, virtio.DescIndirect, 0)
			putDesc(m, 0x3000, 0x1000, 4, virtio.DescNext, 1)
			putDesc(m, 0x3010, 0x2000, 6, virtio.DescWrite, 0)
		}, true, nil, 2, 4, 6},
		{"indirect not negotiated", func(m []byte) { putDesc(m, table, 0x3000, 32, virtio.DescIndirect, 0) }, false, virtio.ErrBadChain, 0, 0, 0},
		{"self loop", func(m []byte) { putDesc(m, table, 0x1000, 1, virtio.DescNext, 0) }, false, virtio.ErrBadChain, 0, 0, 0},
		{"next out of table", func(m []byte) { putDesc(m, table, 0x1000, 1, virtio.DescNext, 8) }, false, virtio.ErrBadChain, 0, 0, 0},
		{"wrapping buffer", func(m []byte) { putDesc(m, table, ^uint64(0)-2, 10, 0, 0) }, false, virtio.ErrBadChain, 0, 0, 0},
		{"indirect table too big", func(m []byte) { putDesc(m, table, 0x3000, 16*(virtio.MaxIndirect+1), virtio.DescIndirect, 0) }, true, virtio.ErrBadChain, 0, 0, 0},
		{"indirect empty", func(m []byte) { putDesc(m, table, 0x3000, 0, virtio.DescIndirect, 0) }, true, virtio.ErrBadChain, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := &virtio.SliceMemory{Mem: make([]byte, 0x10000)}
			tc.setup(mem.Mem)
			c, err := virtio.ParseChain(mem, table, 8, 0, tc.indirect)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			if len(c.Segments) != tc.segs || c.ReadLen != tc.r || c.WriteLen != tc.w {
				t.Fatalf("chain %+v, want %d segments, %d readable, %d writable", c, tc.segs, tc.r, tc.w)
			}
		})
	}
}

func TestChainReaderWriter(t *testing.T) {
	mem := &virtio.SliceMemory{Mem: make([]byte, 0x10000)}
	copy(mem.Mem[0x1000:], "hello ")
	copy(mem.Mem[0x2000:], "world")
	c := &virtio.Chain{Segments: []virtio.Segment{{Addr: 0x1000, Len: 6}, {Addr: 0x2000, Len: 5}, {Addr: 0x3000, Len: 4, Write: true}, {Addr: 0x4000, Len: 100, Write: true}}}
	r := c.Reader(mem)
	if err := r.Skip(2); err != nil {
		t.Fatal(err)
	}
	if r.Remaining() != 9 {
		t.Fatalf("remaining %d", r.Remaining())
	}
	b, err := io.ReadAll(r)
	if err != nil || string(b) != "llo world" {
		t.Fatalf("read %q %v", b, err)
	}
	w := c.Writer(mem)
	if _, err := w.Write([]byte("abcdefg")); err != nil {
		t.Fatal(err)
	}
	if string(mem.Mem[0x3000:0x3004])+string(mem.Mem[0x4000:0x4003]) != "abcdefg" || w.Written() != 7 || w.Remaining() != 97 {
		t.Fatalf("writer: %q %q written %d remaining %d", mem.Mem[0x3000:0x3004], mem.Mem[0x4000:0x4003], w.Written(), w.Remaining())
	}
	if _, err := w.Write(make([]byte, 98)); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("overlong write: %v", err)
	}
	if err := c.Reader(mem).Skip(12); !errors.Is(err, virtio.ErrBadChain) {
		t.Fatalf("skip past end: %v", err)
	}
}

// FuzzParseChain feeds arbitrary descriptor tables: no panic, and a chain
// that parses is well formed.
func FuzzParseChain(f *testing.F) {
	seed := make([]byte, 256)
	putDesc(seed, 0, 0x80, 16, virtio.DescNext, 1)
	putDesc(seed, 16, 0x90, 8, virtio.DescWrite, 0)
	f.Add(seed, uint16(0), uint8(3), true)
	ind := make([]byte, 256)
	putDesc(ind, 0, 0x40, 32, virtio.DescIndirect, 0)
	putDesc(ind, 0x40, 0x80, 8, virtio.DescNext, 1)
	putDesc(ind, 0x50, 0x90, 8, virtio.DescWrite|virtio.DescNext, 0)
	f.Add(ind, uint16(0), uint8(4), true)
	f.Fuzz(func(t *testing.T, mem []byte, head uint16, logSize uint8, indirect bool) {
		size := uint16(1) << (logSize % 16)
		m := &virtio.SliceMemory{Mem: mem}
		c, err := virtio.ParseChain(m, 0, size, head, indirect)
		if err != nil {
			if !errors.Is(err, virtio.ErrBadChain) && !errors.Is(err, virtio.ErrBadAddress) {
				t.Fatalf("error %v wraps neither ErrBadChain nor ErrBadAddress", err)
			}
			return
		}
		var r, w uint64
		seenWrite := false
		for _, s := range c.Segments {
			if s.Len == 0 {
				t.Fatal("empty segment kept")
			}
			if s.Write {
				seenWrite = true
				w += uint64(s.Len)
			} else {
				if seenWrite {
					t.Fatal("readable segment after a writable one")
				}
				r += uint64(s.Len)
			}
		}
		if r != c.ReadLen || w != c.WriteLen || r+w > virtio.MaxChainBytes {
			t.Fatalf("lengths %d/%d, chain says %d/%d", r, w, c.ReadLen, c.WriteLen)
		}
		if len(c.Segments) > int(size)+virtio.MaxIndirect {
			t.Fatalf("%d segments from a table of %d", len(c.Segments), size)
		}
	})
}

func TestChainSpans(t *testing.T) {
	c := &virtio.Chain{Segments: []virtio.Segment{{Addr: 0x1000, Len: 16}, {Addr: 0x2000, Len: 100}, {Addr: 0x3000, Len: 50, Write: true}, {Addr: 0x4000, Len: 1, Write: true}}}
	for _, tc := range []struct {
		write   bool
		skip, n uint64
		want    []virtio.Segment
		err     bool
	}{
		{false, 16, 100, []virtio.Segment{{Addr: 0x2000, Len: 100}}, false},
		{false, 10, 10, []virtio.Segment{{Addr: 0x100a, Len: 6}, {Addr: 0x2000, Len: 4}}, false},
		{true, 0, 50, []virtio.Segment{{Addr: 0x3000, Len: 50, Write: true}}, false},
		{true, 49, 2, []virtio.Segment{{Addr: 0x3031, Len: 1, Write: true}, {Addr: 0x4000, Len: 1, Write: true}}, false},
		{true, 0, 0, nil, false},
		{false, 16, 101, nil, true},
	} {
		got, err := c.Spans(tc.write, tc.skip, tc.n)
		if (err != nil) != tc.err || !tc.err && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Spans(%v, %d, %d) = %+v, %v; want %+v", tc.write, tc.skip, tc.n, got, err, tc.want)
		}
	}
}
