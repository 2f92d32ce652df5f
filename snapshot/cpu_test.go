package snapshot

import (
	"errors"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/vmm/kvm"
)

// vendorEntry is leaf 0 for a 12-byte vendor string.
func vendorEntry(v string) kvm.CPUIDEntry {
	le := func(s string) uint32 { return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24 }
	return kvm.CPUIDEntry{Function: 0, EAX: 0xd, EBX: le(v[0:4]), EDX: le(v[4:8]), ECX: le(v[8:12])}
}

// table is a small CPUID table: leaf 1 with sse3|aes|avx and fpu|sse2,
// leaf 7.0 with avx2 and avx512f.
func table(vendor string, leaf1ECX, leaf7EBX uint32) []kvm.CPUIDEntry {
	return []kvm.CPUIDEntry{
		vendorEntry(vendor),
		{Function: 1, EAX: 0x00A20F11, ECX: leaf1ECX, EDX: 1 | 1<<26},
		{Function: 7, Index: 0, Flags: 1, EBX: leaf7EBX},
		{Function: 7, Index: 1, Flags: 1},
	}
}

const (
	sse3, aes, avx, hypervisor, tscDeadline = 1 << 0, 1 << 25, 1 << 28, 1 << 31, 1 << 24
	avx2, avx512f                           = 1 << 5, 1 << 16
)

func TestIdentityOf(t *testing.T) {
	id := IdentityOf(table("AuthenticAMD", sse3|aes|hypervisor, avx2), 2_400_000)
	if id.Vendor != "AuthenticAMD" || id.Family != 0x19 || id.Model != 0x21 || id.Stepping != 1 || id.TSCKHz != 2_400_000 {
		t.Fatalf("identity %+v, want AuthenticAMD family 0x19 model 0x21 stepping 1 at 2400000 kHz", id)
	}
	want := map[string]uint32{"1.0.ecx": sse3 | aes, "1.0.edx": 1 | 1<<26, "7.0.ebx": avx2}
	if len(id.Features) != len(want) {
		t.Fatalf("features %+v, want %v", id.Features, want)
	}
	for _, f := range id.Features {
		key := strings.Join([]string{itoa(f.Leaf), itoa(f.Subleaf), f.Reg}, ".")
		if want[key] != f.Bits {
			t.Errorf("%s = %#x, want %#x (hypervisor bit dropped)", key, f.Bits, want[key])
		}
	}
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

func TestCheckHost(t *testing.T) {
	guest := table("GenuineIntel", sse3|aes|avx|hypervisor|tscDeadline, avx2|avx512f)
	saved := &Saved{CPU: IdentityOf(guest, 3_000_000)}
	tests := []struct {
		name    string
		host    []kvm.CPUIDEntry
		missing []string // nil: accepted
	}{
		{"same", table("GenuineIntel", sse3|aes|avx, avx2|avx512f), nil},
		{"more", table("GenuineIntel", sse3|aes|avx|1<<30, avx2|avx512f|1<<3), nil},
		{"no avx512", table("GenuineIntel", sse3|aes|avx, avx2), []string{"avx512f"}},
		{"no aes no avx2", table("GenuineIntel", sse3|avx, avx512f), []string{"aes", "avx2"}},
		{"no leaf 7", table("GenuineIntel", sse3|aes|avx, 0)[:2], []string{"avx2", "avx512f"}},
		{"vendor", table("AuthenticAMD", sse3|aes|avx, avx2|avx512f), []string{"GenuineIntel processor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckHost(saved, tt.host)
			if tt.missing == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrHostMismatch) {
				t.Fatalf("err = %v, want ErrHostMismatch", err)
			}
			for _, m := range tt.missing {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("err %q does not name %q", err, m)
				}
			}
		})
	}
}

func TestCheckHostUnnamedBit(t *testing.T) {
	saved := &Saved{CPU: CPUIdentity{Features: []FeatureWord{{Leaf: 7, Subleaf: 0, Reg: "ebx", Bits: 1 << 1}}}}
	err := CheckHost(saved, nil)
	if !errors.Is(err, ErrHostMismatch) || !strings.Contains(err.Error(), "cpuid 0x7.0 ebx bit 1") {
		t.Fatalf("err = %v, want the bit named", err)
	}
}
