package snapshot

import (
	"fmt"
	"sort"
	"strings"

	"github.com/smolvm/smolvm/vmm/kvm"
)

// CPUIdentity is the processor a snapshot was taken on, as its guest saw it:
// a restore on a host lacking a feature the guest may use is refused.
type CPUIdentity struct {
	// Vendor is CPUID leaf 0's vendor string (GenuineIntel, AuthenticAMD).
	Vendor string
	// Family, Model and Stepping are decoded from leaf 1 EAX.
	Family, Model, Stepping uint32
	// Features are the guest's CPUID feature words.
	Features []FeatureWord
	// TSCKHz is the guest's TSC frequency.
	TSCKHz uint32
}

// FeatureWord is one CPUID register of feature bits the guest saw.
type FeatureWord struct {
	Leaf, Subleaf uint32
	Reg           string // eax, ebx, ecx, edx
	Bits          uint32
}

// featureWord names a register of feature flags; ignore are bits that the
// VMM or the guest's OS sets, not the host's processor.
type featureWord struct {
	leaf, subleaf uint32
	reg           string
	ignore        uint32
	names         map[uint]string
}

// featureWords are the registers compared. Dynamic or VMM-set bits ignored:
// leaf 1 ECX OSXSAVE (27), TSC-deadline (24, the in-kernel LAPIC emulates
// it), hypervisor (31); leaf 1 EDX HTT (28, topology); leaf 7 ECX OSPKE (4).
var featureWords = []featureWord{
	{1, 0, "ecx", 1<<27 | 1<<24 | 1<<31, map[uint]string{0: "sse3", 1: "pclmulqdq", 9: "ssse3", 12: "fma", 13: "cx16",
		19: "sse4.1", 20: "sse4.2", 21: "x2apic", 22: "movbe", 23: "popcnt", 25: "aes", 26: "xsave", 28: "avx",
		29: "f16c", 30: "rdrand"}},
	{1, 0, "edx", 1 << 28, map[uint]string{0: "fpu", 4: "tsc", 5: "msr", 6: "pae", 8: "cx8", 9: "apic", 11: "sep",
		13: "pge", 15: "cmov", 16: "pat", 19: "clflush", 23: "mmx", 24: "fxsr", 25: "sse", 26: "sse2"}},
	{7, 0, "ebx", 0, map[uint]string{0: "fsgsbase", 3: "bmi1", 4: "hle", 5: "avx2", 7: "smep", 8: "bmi2", 9: "erms",
		10: "invpcid", 11: "rtm", 16: "avx512f", 17: "avx512dq", 18: "rdseed", 19: "adx", 20: "smap",
		23: "clflushopt", 24: "clwb", 29: "sha_ni", 30: "avx512bw", 31: "avx512vl"}},
	{7, 0, "ecx", 1 << 4, map[uint]string{1: "avx512vbmi", 3: "pku", 8: "gfni", 9: "vaes", 10: "vpclmulqdq",
		11: "avx512_vnni", 14: "avx512_vpopcntdq", 22: "rdpid"}},
	{7, 0, "edx", 0, map[uint]string{4: "fsrm", 8: "avx512_vp2intersect", 10: "md_clear", 14: "serialize",
		22: "amx_bf16", 24: "amx_tile", 25: "amx_int8", 26: "ibrs", 27: "stibp", 29: "arch_capabilities",
		31: "ssbd"}},
	{7, 1, "eax", 0, map[uint]string{4: "avx_vnni", 5: "avx512_bf16"}},
	{0xd, 1, "eax", 0, map[uint]string{0: "xsaveopt", 1: "xsavec", 2: "xgetbv1", 3: "xsaves"}},
	{0xd, 0, "eax", 0, map[uint]string{0: "xsave:x87", 1: "xsave:sse", 2: "xsave:avx", 5: "xsave:opmask",
		6: "xsave:zmm_hi256", 7: "xsave:hi16_zmm", 9: "xsave:pkru", 17: "xsave:xtilecfg", 18: "xsave:xtiledata"}},
	{0x80000001, 0, "ecx", 0, map[uint]string{0: "lahf_lm", 5: "abm", 6: "sse4a", 8: "3dnowprefetch", 11: "xop",
		16: "fma4", 21: "tbm"}},
	{0x80000001, 0, "edx", 0, map[uint]string{11: "syscall", 20: "nx", 26: "pdpe1gb", 27: "rdtscp", 29: "lm"}},
	{0x80000008, 0, "ebx", 0, map[uint]string{0: "clzero", 9: "wbnoinvd", 12: "ibpb", 14: "ibrs", 24: "amd_ssbd"}},
}

// register returns reg of e.
func register(e kvm.CPUIDEntry, reg string) uint32 {
	switch reg {
	case "eax":
		return e.EAX
	case "ebx":
		return e.EBX
	case "ecx":
		return e.ECX
	default:
		return e.EDX
	}
}

// lookup finds leaf/subleaf in a CPUID table (subleaf only where the entry
// says its index matters).
func lookup(table []kvm.CPUIDEntry, leaf, subleaf uint32) (kvm.CPUIDEntry, bool) {
	for _, e := range table {
		if e.Function == leaf && (e.Index == subleaf || e.Flags&1 == 0) {
			return e, true
		}
	}
	return kvm.CPUIDEntry{}, false
}

// IdentityOf describes the processor of a guest CPUID table (vCPU 0's,
// from its saved state) running at tscKHz.
func IdentityOf(guest []kvm.CPUIDEntry, tscKHz uint32) CPUIdentity {
	id := CPUIdentity{TSCKHz: tscKHz}
	if e, ok := lookup(guest, 0, 0); ok {
		id.Vendor = vendorString(e)
	}
	if e, ok := lookup(guest, 1, 0); ok {
		id.Family, id.Model, id.Stepping = decodeSignature(e.EAX)
	}
	for _, w := range featureWords {
		e, ok := lookup(guest, w.leaf, w.subleaf)
		if !ok {
			continue
		}
		if bits := register(e, w.reg) &^ w.ignore; bits != 0 {
			id.Features = append(id.Features, FeatureWord{Leaf: w.leaf, Subleaf: w.subleaf, Reg: w.reg, Bits: bits})
		}
	}
	return id
}

// decodeSignature splits leaf 1 EAX into display family, model, stepping.
func decodeSignature(eax uint32) (family, model, stepping uint32) {
	stepping = eax & 0xF
	model = eax >> 4 & 0xF
	family = eax >> 8 & 0xF
	if family == 0xF {
		family += eax >> 20 & 0xFF
	}
	if family == 0x6 || family >= 0xF {
		model |= (eax >> 16 & 0xF) << 4
	}
	return family, model, stepping
}

func vendorString(e kvm.CPUIDEntry) string {
	b := make([]byte, 0, 12)
	for _, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return strings.TrimRight(string(b), "\x00")
}

// CheckHost refuses to restore s on a host whose KVM supported CPUID table
// (kvm.System.SupportedCPUID) lacks a feature the guest saw, or whose vendor
// differs; the error names every missing feature.
func CheckHost(s *Saved, host []kvm.CPUIDEntry) error {
	var hostVendor string
	if e, ok := lookup(host, 0, 0); ok {
		hostVendor = vendorString(e)
	}
	if s.CPU.Vendor != "" && hostVendor != s.CPU.Vendor {
		return fmt.Errorf("%w: saved on a %s processor, this host is %q", ErrHostMismatch, s.CPU.Vendor, hostVendor)
	}
	var missing []string
	for _, f := range s.CPU.Features {
		var hostBits uint32
		if e, ok := lookup(host, f.Leaf, f.Subleaf); ok {
			hostBits = register(e, f.Reg)
		}
		w := knownWord(f)
		lack := f.Bits &^ hostBits &^ w.ignore
		for bit := uint(0); bit < 32; bit++ {
			if lack&(1<<bit) == 0 {
				continue
			}
			name := w.names[bit]
			if name == "" {
				name = fmt.Sprintf("cpuid %#x.%d %s bit %d", f.Leaf, f.Subleaf, f.Reg, bit)
			}
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: the guest saw CPU features this host's KVM lacks: %s", ErrHostMismatch, strings.Join(missing, ", "))
	}
	return nil
}

// knownWord returns the table entry for f (or an empty one).
func knownWord(f FeatureWord) featureWord {
	for _, w := range featureWords {
		if w.leaf == f.Leaf && w.subleaf == f.Subleaf && w.reg == f.Reg {
			return w
		}
	}
	return featureWord{}
}
