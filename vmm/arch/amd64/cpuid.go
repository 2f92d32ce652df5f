package amd64

import "math/bits"

// CPUIDEntry is one CPUID leaf/subleaf result (kvm_cpuid_entry2).
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
}

// CPUIDFlagSignificantIndex marks an entry whose Index (subleaf) matters
// (KVM_CPUID_FLAG_SIGNIFCANT_INDEX).
const CPUIDFlagSignificantIndex = 1

// CPUID leaves and bits FilterCPUID touches.
const (
	leafVendor          = 0x0
	leafFeatures        = 0x1
	leafSerial          = 0x3
	leafCacheParams     = 0x4
	leafExtFeatures     = 0x7
	leafExtTopology     = 0xB
	leafHybrid          = 0x1A
	leafV2Topology      = 0x1F
	leafAMDExtFeatures  = 0x80000001
	leafAMDAddrSizes    = 0x80000008
	leafAMDCacheTopo    = 0x8000001D
	leafAMDExtAPICID    = 0x8000001E
	leafAMDExtTopo      = 0x80000026
	leaf1ECXTSCDeadline = 1 << 24
	leaf1ECXHypervisor  = 1 << 31
	leaf1ECXVMX         = 1 << 5
	leafAMDECXSVM       = 1 << 2
	leaf1EDXHTT         = 1 << 28
	leaf7EDXHybrid      = 1 << 15

	topoLevelInvalid = 0
	topoLevelSMT     = 1
	topoLevelCore    = 2
)

// FilterCPUID returns the CPUID table for vCPU cpu (0-based, also its APIC
// id) of a machine with ncpus vCPUs, from KVM's supported table. The guest
// sees one package of ncpus cores with one thread each:
//
//   - leaf 1: EBX initial APIC id = cpu, logical processor count = ncpus,
//     brand index 0; HTT set when ncpus > 1; the hypervisor bit set; the
//     TSC-deadline timer bit set (KVM's in-kernel LAPIC always emulates it,
//     but KVM_GET_SUPPORTED_CPUID leaves it to the VMM; this package assumes
//     the in-kernel irqchip).
//   - leaf 4 (Intel): cores per package and threads sharing each cache
//     (L1/L2 per core, L3 shared by the package).
//   - leaves 0xB and 0x1F (when supported): rebuilt as SMT level (1 thread)
//     and core level (ncpus), x2APIC id = cpu in EDX of every subleaf.
//   - AMD: 0x80000008 ECX core count and APIC id size, 0x8000001D sharing,
//     0x8000001E extended APIC id = cpu, one core per compute unit, node 0.
//   - KVM's paravirtual leaves (0x40000000...) are kept as they are.
//   - leaf 0xD (XSAVE) is kept as KVM reports it: KVM itself rewrites 0xD.0
//     EBX (and 0xD.1 EBX with XSAVES/XSAVEC) from the vCPU's XCR0 at
//     KVM_SET_CPUID2 and at every XCR0 change (guest XSETBV, KVM_SET_XCRS);
//     a size computed here would go stale (docs/VMM.md).
//   - No nested virtualization: VMX (leaf 1 ECX bit 5) and SVM (0x80000001
//     ECX bit 2) are cleared. A guest hypervisor's state (KVM_GET_NESTED_STATE)
//     is not part of a snapshot, and an L1 KVM that sees SVM in its guest's
//     CPUID runs that guest with its nested-virtualization paths enabled.
//   - Removed because they would describe the host rather than the guest:
//     leaf 3 (processor serial number), leaf 0x1A and the leaf 7 hybrid bit
//     (P-core/E-core types), leaf 0x80000026 (AMD extended topology, not
//     modelled).
//
// supported is not modified.
func FilterCPUID(supported []CPUIDEntry, cpu, ncpus int) []CPUIDEntry {
	ncpus = max(ncpus, 1)
	coreBits := uint32(bits.Len(uint(ncpus - 1)))
	amd := isAMD(supported)
	out := make([]CPUIDEntry, 0, len(supported)+4)
	done := map[uint32]bool{}
	for _, e := range supported {
		switch e.Function {
		case leafSerial, leafHybrid, leafAMDExtTopo:
			continue
		case leafExtTopology, leafV2Topology:
			if !done[e.Function] {
				out = append(out, topologyLeaf(e.Function, uint32(cpu), uint32(ncpus), coreBits)...)
				done[e.Function] = true
			}
			continue
		case leafFeatures:
			e.EBX = e.EBX&0x0000FF00 | uint32(cpu)<<24 | uint32(min(ncpus, 0xFF))<<16
			e.ECX |= leaf1ECXHypervisor | leaf1ECXTSCDeadline
			e.ECX &^= leaf1ECXVMX
			if ncpus > 1 {
				e.EDX |= leaf1EDXHTT
			} else {
				e.EDX &^= leaf1EDXHTT
			}
		case leafCacheParams:
			if !amd && e.EAX&0x1F != 0 { // cache type 0: no more caches
				e.EAX = e.EAX&0x3FFF | min(uint32(1)<<coreBits-1, 63)<<26 | sharing(e.EAX, coreBits)<<14
			}
		case leafExtFeatures:
			if e.Index == 0 {
				e.EDX &^= leaf7EDXHybrid
			}
		case leafAMDExtFeatures:
			e.ECX &^= leafAMDECXSVM
		case leafAMDAddrSizes:
			if amd {
				e.ECX = e.ECX&^0xF0FF | coreBits<<12 | uint32(ncpus-1)&0xFF
			}
		case leafAMDCacheTopo:
			if e.EAX&0x1F != 0 {
				e.EAX = e.EAX&^(0xFFF<<14) | sharing(e.EAX, coreBits)<<14
			}
		case leafAMDExtAPICID:
			e.EAX = uint32(cpu)
			e.EBX = uint32(cpu) & 0xFF // compute unit id; one thread per unit
			e.ECX = 0                  // node 0, one node per package
			e.EDX = 0
		}
		out = append(out, e)
	}
	return out
}

// sharing returns "logical processors sharing this cache - 1" for the cache
// a leaf 4 / 0x8000001D EAX describes: caches of level 3 and up are shared by
// the package, the rest belong to one core (one thread).
func sharing(eax, coreBits uint32) uint32 {
	if level := eax >> 5 & 7; level >= 3 {
		return min(uint32(1)<<coreBits-1, 0xFFF)
	}
	return 0
}

// topologyLeaf builds leaf 0xB or 0x1F: subleaf 0 the SMT level, subleaf 1
// the core level, subleaf 2 the terminating invalid level.
func topologyLeaf(fn, cpu, ncpus, coreBits uint32) []CPUIDEntry {
	f := uint32(CPUIDFlagSignificantIndex)
	return []CPUIDEntry{
		{Function: fn, Index: 0, Flags: f, EAX: 0, EBX: 1, ECX: topoLevelSMT<<8 | 0, EDX: cpu},
		{Function: fn, Index: 1, Flags: f, EAX: coreBits, EBX: ncpus, ECX: topoLevelCore<<8 | 1, EDX: cpu},
		{Function: fn, Index: 2, Flags: f, EAX: 0, EBX: 0, ECX: topoLevelInvalid<<8 | 2, EDX: cpu},
	}
}

// isAMD reports whether leaf 0's vendor is AMD or Hygon.
func isAMD(entries []CPUIDEntry) bool {
	for _, e := range entries {
		if e.Function == leafVendor {
			v := vendor(e)
			return v == "AuthenticAMD" || v == "HygonGenuine"
		}
	}
	return false
}

// vendor returns leaf 0's vendor string (EBX, EDX, ECX).
func vendor(e CPUIDEntry) string {
	b := make([]byte, 0, 12)
	for _, r := range []uint32{e.EBX, e.EDX, e.ECX} {
		b = append(b, byte(r), byte(r>>8), byte(r>>16), byte(r>>24))
	}
	return string(b)
}
