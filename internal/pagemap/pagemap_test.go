package pagemap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"slices"
	"testing"
	"unsafe"
)

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want []uint64
		err  bool
	}{
		{nil, []uint64{}, false},
		{[]byte{1, 0, 0, 0, 0, 0, 0, 0x80}, []uint64{Present | 1}, false},
		{[]byte{1, 2, 3}, nil, true},
	} {
		got, err := Decode(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Fatalf("Decode(%x) = %v, %v", tc.in, got, err)
		}
	}
}

// Read takes the entries of the pages asked for from the table, and
// refuses unaligned or out-of-table ranges and short tables.
func TestRead(t *testing.T) {
	table := make([]byte, 16*8)
	for i := range 16 {
		binary.LittleEndian.PutUint64(table[i*8:], uint64(i)|Present)
	}
	r := bytes.NewReader(table)
	for _, tc := range []struct {
		name  string
		addr  uint64
		n     int64
		first uint64
		err   error
	}{
		{"pages 2-5", 2 * PageSize, 4, 2, nil},
		{"none", 0, 0, 0, nil},
		{"past the end", 14 * PageSize, 4, 0, ErrShort},
		{"unaligned", 2*PageSize + 1, 1, 0, errAny},
		{"far out", 1 << 62, 1, 0, errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Read(r, tc.addr, tc.n)
			switch {
			case tc.err == errAny && err == nil, tc.err != nil && tc.err != errAny && !errors.Is(err, tc.err):
				t.Fatalf("err %v, want %v", err, tc.err)
			case tc.err != nil:
				return
			case err != nil:
				t.Fatal(err)
			}
			if int64(len(got)) != tc.n {
				t.Fatalf("%d entries, want %d", len(got), tc.n)
			}
			for i, e := range got {
				if e != (tc.first+uint64(i))|Present {
					t.Fatalf("entry %d = %#x", i, e)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// The real table: a page this test wrote is populated.
func TestReadSelf(t *testing.T) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skipf("no pagemap: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 3*PageSize)
	for i := range buf {
		buf[i] = 1
	}
	addr := (uint64(uintptr(unsafe.Pointer(&buf[0]))) + PageSize - 1) &^ (PageSize - 1)
	e, err := Read(f, addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !Populated(e[0]) {
		t.Fatalf("a written page's entry %#x: not populated", e[0])
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0x80})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if (err == nil) != (len(b)%8 == 0) || (err == nil && len(e) != len(b)/8) {
			t.Fatalf("Decode(%d bytes) = %d entries, %v", len(b), len(e), err)
		}
	})
}
