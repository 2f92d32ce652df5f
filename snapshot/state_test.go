package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// fill sets every exported field reachable from v to pseudo-random values
// (slices get 1-3 elements, pointers are allocated).
func fill(v reflect.Value, r *rand.Rand, depth int) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(r.Int64() >> (64 - v.Type().Bits()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(r.Uint64() >> (64 - v.Type().Bits()))
	case reflect.String:
		v.SetString(strings.Repeat("x", r.IntN(5)) + "é\x00")
	case reflect.Slice:
		if depth > 8 {
			return
		}
		n := 1 + r.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := 0; i < n; i++ {
			fill(s.Index(i), r, depth+1)
		}
		v.Set(s)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(v.Index(i), r, depth+1)
		}
	case reflect.Pointer:
		if depth > 8 {
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), r, depth+1)
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(r.Int64N(1<<32), r.Int64N(1e9)).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), r, depth+1)
			}
		}
	case reflect.Map:
		if depth > 8 {
			return
		}
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		fill(k, r, depth+1)
		fill(e, r, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	}
}

// unexported lists named struct fields a JSON encoding would drop: saved
// state hidden in them would silently vanish from a snapshot.
func unexported(t reflect.Type, path string, seen map[reflect.Type]bool, out *[]string) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		unexported(t.Elem(), path+"[]", seen, out)
	case reflect.Map:
		unexported(t.Elem(), path+"{}", seen, out)
	case reflect.Interface, reflect.Func, reflect.Chan:
		*out = append(*out, path+" ("+t.Kind().String()+")")
	case reflect.Struct:
		if seen[t] || t == reflect.TypeOf(time.Time{}) {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() && f.Name != "_" {
				*out = append(*out, path+"."+f.Name)
				continue
			}
			if f.Tag.Get("json") == "-" {
				*out = append(*out, path+"."+f.Name+" (json:\"-\")")
			}
			unexported(f.Type, path+"."+f.Name, seen, out)
		}
	}
}

func TestSavedHasOnlyEncodableFields(t *testing.T) {
	var bad []string
	unexported(reflect.TypeOf(Saved{}), "Saved", map[reflect.Type]bool{}, &bad)
	if len(bad) > 0 {
		t.Fatalf("fields the state encoding would lose:\n%s", strings.Join(bad, "\n"))
	}
}

// validSaved is a Saved that passes check, its state filled at random.
func validSaved(seed uint64) *Saved {
	r := rand.New(rand.NewPCG(seed, 9))
	s := new(Saved)
	fill(reflect.ValueOf(s).Elem(), r, 0)
	s.Config.CPUs = len(s.Machine.VCPUs)
	s.Config.MemBytes = 5 << 30
	s.Memory = MemoryLayout(s.Config.MemBytes)
	for i := range s.Config.Disks {
		s.Config.Disks[i].Name = string(rune('a' + i))
		s.Config.Disks[i].Size &= 1<<40 - 1
	}
	return s
}

func TestStateRoundTrip(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		s := validSaved(seed)
		var b bytes.Buffer
		if err := EncodeState(&b, s); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeState(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("seed %d: decoded state differs from the saved one", seed)
		}
	}
}

func TestMemoryLayout(t *testing.T) {
	tests := []struct {
		mem  int64
		want []MemoryRegion
	}{
		{256 << 20, []MemoryRegion{{0, 0, 256 << 20}}},
		{3 << 30, []MemoryRegion{{0, 0, 3 << 30}}},
		{5 << 30, []MemoryRegion{{0, 0, 3 << 30}, {4 << 30, 3 << 30, 2 << 30}}},
	}
	for _, tt := range tests {
		if got := MemoryLayout(tt.mem); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("MemoryLayout(%d) = %+v, want %+v", tt.mem, got, tt.want)
		}
	}
}

func TestDecodeStateRefuses(t *testing.T) {
	var good bytes.Buffer
	if err := EncodeState(&good, validSaved(3)); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(good.Bytes()))
	}
	reencode := func(f func(s *Saved)) []byte {
		s := validSaved(3)
		f(s)
		var b bytes.Buffer
		if err := EncodeState(&b, s); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"empty", nil, ErrCorrupt, "header"},
		{"bundle", []byte("SMOLMACH\x01\x00\x00\x00........................................................"), ErrBadMagic, "SMOLMACH"},
		{"magic", edit(func(b []byte) []byte { b[0] = 'X'; return b }), ErrBadMagic, "XMOLSTAT"},
		{"major", edit(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[8:], 2); return b }), ErrVersion, "2.0"},
		{"flags", edit(func(b []byte) []byte { b[12] = 1; return b }), ErrCorrupt, "flags"},
		{"huge length", edit(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<40); return b }), ErrCorrupt, "exceeds"},
		{"truncated", edit(func(b []byte) []byte { return b[:len(b)-1] }), ErrCorrupt, "truncated"},
		{"trailing", edit(func(b []byte) []byte { return append(b, 0) }), ErrCorrupt, "after"},
		{"flipped payload", edit(func(b []byte) []byte { b[headerSize+7] ^= 1; return b }), ErrCorrupt, "sha256"},
		{"flipped digest", edit(func(b []byte) []byte { b[30] ^= 1; return b }), ErrCorrupt, "sha256"},
		{"no vcpus", reencode(func(s *Saved) { s.Machine.VCPUs = nil }), ErrCorrupt, "vCPUs"},
		{"vcpu count", reencode(func(s *Saved) { s.Config.CPUs++ }), ErrCorrupt, "saved vCPUs"},
		{"memory size", reencode(func(s *Saved) { s.Config.MemBytes++ }), ErrCorrupt, "memory size"},
		{"memory layout", reencode(func(s *Saved) { s.Memory[1].Offset = 0 }), ErrCorrupt, "memory region 1"},
		{"duplicate disk", reencode(func(s *Saved) {
			s.Config.Disks = []Disk{{Name: "a", Size: 1}, {Name: "a", Size: 2}}
		}), ErrCorrupt, "disk 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeState(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.msg)
			}
		})
	}
}

func FuzzDecodeState(f *testing.F) {
	var b bytes.Buffer
	if err := EncodeState(&b, validSaved(1)); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte(stateMagic))
	f.Add(b.Bytes()[:headerSize])
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := DecodeState(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes and decodes to the same.
		var out bytes.Buffer
		if err := EncodeState(&out, s); err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeState(&out)
		if err != nil {
			t.Fatalf("re-encoded state refused: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatal("re-encoded state differs")
		}
	})
}

var _ = vmm.State{}
var _ = kvm.CPUIDEntry{}
