package vsock

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderLayout(t *testing.T) {
	h := Header{SrcCID: 0x0102030405060708, DstCID: 2, SrcPort: 0x11223344, DstPort: 52, Len: 0x1000,
		Type: TypeStream, Op: OpRW, Flags: ShutdownBoth, BufAlloc: 0x40000, FwdCnt: 0xfffffffe}
	want := []byte{
		8, 7, 6, 5, 4, 3, 2, 1, // src_cid
		2, 0, 0, 0, 0, 0, 0, 0, // dst_cid
		0x44, 0x33, 0x22, 0x11, // src_port
		52, 0, 0, 0, // dst_port
		0, 0x10, 0, 0, // len
		1, 0, // type
		5, 0, // op
		3, 0, 0, 0, // flags
		0, 0, 4, 0, // buf_alloc
		0xfe, 0xff, 0xff, 0xff, // fwd_cnt
	}
	if got := h.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	back, err := DecodeHeader(want)
	if err != nil || back != h {
		t.Fatalf("decoded %+v, %v; want %+v", back, err, h)
	}
}

func TestDecodeHeaderShort(t *testing.T) {
	for _, n := range []int{0, 1, HeaderSize - 1} {
		if _, err := DecodeHeader(make([]byte, n)); !errors.Is(err, ErrBadPacket) {
			t.Errorf("%d bytes: %v, want ErrBadPacket", n, err)
		}
	}
}

func TestOpString(t *testing.T) {
	for _, tc := range []struct {
		op   Op
		want string
	}{{OpRequest, "REQUEST"}, {OpCreditRequest, "CREDIT_REQUEST"}, {Op(99), "op(99)"}} {
		if got := tc.op.String(); got != tc.want {
			t.Errorf("%d: %q, want %q", uint16(tc.op), got, tc.want)
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add((&Header{SrcCID: 3, DstCID: 2, Op: OpRequest, Type: TypeStream}).Bytes())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b)
		if len(b) < HeaderSize {
			if err == nil {
				t.Fatal("short header accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Bytes(); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("round trip %x -> %x", b[:HeaderSize], got)
		}
		_ = h.String()
	})
}

func TestParseConnect(t *testing.T) {
	for _, tc := range []struct {
		line string
		port uint32
		ok   bool
	}{
		{"CONNECT 52\n", 52, true},
		{"CONNECT 0\n", 0, true},
		{"CONNECT 4294967295\n", 4294967295, true},
		{"CONNECT 4294967296\n", 0, false},
		{"CONNECT -1\n", 0, false},
		{"CONNECT +1\n", 0, false},
		{"CONNECT 52", 0, false},
		{"CONNECT 52\r\n", 0, false},
		{"CONNECT \n", 0, false},
		{"CONNECT  52\n", 0, false},
		{"connect 52\n", 0, false},
		{"", 0, false},
	} {
		port, err := ParseConnect([]byte(tc.line))
		if tc.ok && (err != nil || port != tc.port) {
			t.Errorf("%q: %d, %v; want %d", tc.line, port, err, tc.port)
		}
		if !tc.ok && !errors.Is(err, ErrBadConnect) {
			t.Errorf("%q: %d, %v; want ErrBadConnect", tc.line, port, err)
		}
	}
}

func FuzzParseConnect(f *testing.F) {
	for _, s := range []string{"CONNECT 52\n", "CONNECT 4294967296\n", "CONNECT x\n", "OK 1\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		port, err := ParseConnect(b)
		if err != nil {
			if !errors.Is(err, ErrBadConnect) {
				t.Fatalf("error %v does not wrap ErrBadConnect", err)
			}
			return
		}
		// Whatever is accepted is exactly the canonical line or has
		// leading zeros.
		if !bytes.HasPrefix(b, []byte("CONNECT ")) || b[len(b)-1] != '\n' {
			t.Fatalf("accepted %q as port %d", b, port)
		}
	})
}
