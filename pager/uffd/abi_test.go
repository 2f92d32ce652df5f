package uffd

import (
	"encoding/binary"
	"testing"
)

func TestABISizes(t *testing.T) {
	for name, s := range abiSizes {
		if s[0] != s[1] {
			t.Errorf("sizeof(%s) = %d in Go, kernel wants %d", name, s[0], s[1])
		}
	}
}

// The size field of each ioctl number must match the struct it carries.
func TestIoctlNumbers(t *testing.T) {
	tests := []struct {
		name       string
		req        uint32
		dir, nr    uint32
		size       uintptr
		structName string
	}{
		{"UFFDIO_API", ioctlAPI, 3, 0x3F, 24, "uffdio_api"},
		{"UFFDIO_REGISTER", ioctlRegister, 3, 0x00, 32, "uffdio_register"},
		{"UFFDIO_UNREGISTER", ioctlUnregister, 2, 0x01, 16, "uffdio_range"},
		{"UFFDIO_WAKE", ioctlWake, 2, 0x02, 16, "uffdio_range"},
		{"UFFDIO_COPY", ioctlCopy, 3, 0x03, 40, "uffdio_copy"},
		{"UFFDIO_ZEROPAGE", ioctlZeroPage, 3, 0x04, 32, "uffdio_zeropage"},
		{"USERFAULTFD_IOC_NEW", ioctlNew, 0, 0x00, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.req >> 30; got != tt.dir {
				t.Errorf("dir = %d, want %d", got, tt.dir)
			}
			if got := (tt.req >> 8) & 0xff; got != 0xAA {
				t.Errorf("type = %#x, want 0xAA", got)
			}
			if got := tt.req & 0xff; got != tt.nr {
				t.Errorf("nr = %#x, want %#x", got, tt.nr)
			}
			if got := uintptr(tt.req>>16) & 0x3fff; got != tt.size {
				t.Errorf("size = %d, want %d", got, tt.size)
			}
			if tt.structName != "" && abiSizes[tt.structName][0] != tt.size {
				t.Errorf("Go struct %s is %d bytes, ioctl encodes %d", tt.structName, abiSizes[tt.structName][0], tt.size)
			}
		})
	}
}

func TestDecodeMsg(t *testing.T) {
	le := binary.NativeEndian
	mk := func(ev byte, a, b, c uint64) []byte {
		m := make([]byte, MsgSize)
		m[0] = ev
		le.PutUint64(m[8:], a)
		le.PutUint64(m[16:], b)
		le.PutUint64(m[24:], c)
		return m
	}
	tests := []struct {
		name string
		in   []byte
		want Msg
		err  bool
	}{
		{"pagefault", mk(EventPagefault, PagefaultFlagWrite, 0x7f0000001000, 42), Msg{Event: EventPagefault, Flags: 1, Address: 0x7f0000001000, ThreadID: 42}, false},
		{"remove", mk(EventRemove, 0x1000, 0x5000, 0), Msg{Event: EventRemove, Address: 0x1000, End: 0x5000}, false},
		{"unmap", mk(EventUnmap, 0x2000, 0x3000, 0), Msg{Event: EventUnmap, Address: 0x2000, End: 0x3000}, false},
		{"unknown event keeps only the type", mk(0x7e, 1, 2, 3), Msg{Event: 0x7e}, false},
		{"short", make([]byte, 31), Msg{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeMsg(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzDecodeMsg(f *testing.F) {
	f.Add(make([]byte, MsgSize))
	f.Add([]byte{EventPagefault})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMsg(b)
		if err != nil && len(b) >= MsgSize {
			t.Fatalf("error on a full message: %v", err)
		}
		if err == nil && m.Event != b[0] {
			t.Fatalf("event %#x, want %#x", m.Event, b[0])
		}
	})
}
