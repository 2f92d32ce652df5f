package vmm

import (
	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// Conversions between vmm/arch/amd64's types (x86 knowledge, no KVM) and
// vmm/kvm's ioctl structures.

func kvmRegs(r amd64.Regs) kvm.Regs {
	return kvm.Regs{
		RAX: r.RAX, RBX: r.RBX, RCX: r.RCX, RDX: r.RDX, RSI: r.RSI, RDI: r.RDI, RSP: r.RSP, RBP: r.RBP,
		R8: r.R8, R9: r.R9, R10: r.R10, R11: r.R11, R12: r.R12, R13: r.R13, R14: r.R14, R15: r.R15,
		RIP: r.RIP, RFLAGS: r.RFLAGS,
	}
}

func kvmSegment(s amd64.Segment) kvm.Segment {
	k := kvm.Segment{
		Base: s.Base, Limit: s.Limit, Selector: s.Selector, Type: s.Type, Present: s.Present,
		DPL: s.DPL, DB: s.DB, S: s.S, L: s.L, G: s.G, AVL: s.AVL,
	}
	if s.Present == 0 {
		k.Unusable = 1
	}
	return k
}

func kvmDTable(d amd64.DTable) kvm.DTable { return kvm.DTable{Base: d.Base, Limit: d.Limit} }

func kvmSregs(s amd64.Sregs) kvm.Sregs {
	return kvm.Sregs{
		CS: kvmSegment(s.CS), DS: kvmSegment(s.DS), ES: kvmSegment(s.ES), FS: kvmSegment(s.FS),
		GS: kvmSegment(s.GS), SS: kvmSegment(s.SS), TR: kvmSegment(s.TR), LDT: kvmSegment(s.LDT),
		GDT: kvmDTable(s.GDT), IDT: kvmDTable(s.IDT),
		CR0: s.CR0, CR2: s.CR2, CR3: s.CR3, CR4: s.CR4, CR8: s.CR8, EFER: s.EFER, APICBase: s.APICBase,
	}
}

func amd64CPUID(es []kvm.CPUIDEntry) []amd64.CPUIDEntry {
	out := make([]amd64.CPUIDEntry, len(es))
	for i, e := range es {
		out[i] = amd64.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
	}
	return out
}

func kvmCPUID(es []amd64.CPUIDEntry) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, len(es))
	for i, e := range es {
		out[i] = kvm.CPUIDEntry{Function: e.Function, Index: e.Index, Flags: e.Flags, EAX: e.EAX, EBX: e.EBX, ECX: e.ECX, EDX: e.EDX}
	}
	return out
}

func kvmMSRs(ms []amd64.MSR) []kvm.MSREntry {
	out := make([]kvm.MSREntry, len(ms))
	for i, m := range ms {
		out[i] = kvm.MSREntry{Index: m.Index, Data: m.Data}
	}
	return out
}
