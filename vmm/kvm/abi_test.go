package kvm

import (
	"testing"
	"unsafe"
)

// The expected values below are the kernel's: sizeof/offsetof and the ioctl
// macros from linux/kvm.h and asm/kvm.h (x86-64), printed by a C program
// compiled against the uapi headers.

func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), 16},
		{"kvm_msrs", unsafe.Sizeof(msrsHeader{}), 8},
		{"kvm_msr_list", unsafe.Sizeof(msrListHeader{}), 4},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_cpuid2", unsafe.Sizeof(cpuidHeader{}), 8},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024},
		{"kvm_xcr", unsafe.Sizeof(XCR{}), 16},
		{"kvm_xcrs", unsafe.Sizeof(XCRS{}), 392},
		{"kvm_mp_state", unsafe.Sizeof(mpState{}), 4},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64},
		{"kvm_debugregs", unsafe.Sizeof(DebugRegs{}), 128},
		{"kvm_pic_state", unsafe.Sizeof(PICState{}), 16},
		{"kvm_ioapic_state", unsafe.Sizeof(IOAPICState{}), 216},
		{"kvm_irqchip", unsafe.Sizeof(irqchip{}), 520},
		{"kvm_pit_channel_state", unsafe.Sizeof(PITChannelState{}), 24},
		{"kvm_pit_state2", unsafe.Sizeof(PITState2{}), 112},
		{"kvm_pit_config", unsafe.Sizeof(pitConfig{}), 64},
		{"kvm_clock_data", unsafe.Sizeof(ClockData{}), 48},
		{"kvm_userspace_memory_region", unsafe.Sizeof(userspaceMemoryRegion{}), 32},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 8},
		{"kvm_irqfd", unsafe.Sizeof(irqfdArgs{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfdArgs{}), 64},
		{"kvm_msi", unsafe.Sizeof(msiArgs{}), 32},
		{"kvm_irq_routing", unsafe.Sizeof(irqRoutingHeader{}), 8},
		{"kvm_irq_routing_entry", unsafe.Sizeof(irqRoutingEntry{}), 48},
		{"kvm_run header", unsafe.Sizeof(runHeader{}), runExitOffset},
		{"kvm_run.io", unsafe.Sizeof(runIO{}), 16},
		{"kvm_run.mmio", unsafe.Sizeof(runMMIO{}), 24},
		{"kvm_run.internal", unsafe.Sizeof(runInternal{}), 136},
		{"kvm_run.system_event", unsafe.Sizeof(runSystemEvent{}), 136},
	} {
		if c.got != c.want {
			t.Errorf("sizeof(%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestFieldOffsets(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"kvm_run.immediate_exit", unsafe.Offsetof(runHeader{}.ImmediateExit), 1},
		{"kvm_run.exit_reason", unsafe.Offsetof(runHeader{}.ExitReason), 8},
		{"kvm_run.if_flag", unsafe.Offsetof(runHeader{}.IFFlag), 13},
		{"kvm_run.cr8", unsafe.Offsetof(runHeader{}.CR8), 16},
		{"kvm_vcpu_events.sipi_vector", unsafe.Offsetof(VCPUEvents{}.SIPIVector), 16},
		{"kvm_vcpu_events.smi", unsafe.Offsetof(VCPUEvents{}.SMISMM), 24},
		{"kvm_vcpu_events.triple_fault", unsafe.Offsetof(VCPUEvents{}.TripleFaultPending), 28},
		{"kvm_vcpu_events.exception_payload", unsafe.Offsetof(VCPUEvents{}.ExceptionPayload), 56},
		{"kvm_pit_channel_state.count_load_time", unsafe.Offsetof(PITChannelState{}.CountLoadTime), 16},
		{"kvm_ioapic_state.redirtbl", unsafe.Offsetof(IOAPICState{}.RedirTbl), 24},
		{"kvm_clock_data.realtime", unsafe.Offsetof(ClockData{}.Realtime), 16},
		{"kvm_fpu.last_ip", unsafe.Offsetof(FPU{}.LastIP), 136},
		{"kvm_fpu.mxcsr", unsafe.Offsetof(FPU{}.MXCSR), 408},
		{"kvm_sregs.cr0", unsafe.Offsetof(Sregs{}.CR0), 224},
		{"kvm_sregs.apic_base", unsafe.Offsetof(Sregs{}.APICBase), 272},
		{"kvm_irq_routing_entry.u", unsafe.Offsetof(irqRoutingEntry{}.IRQChip), 16},
	} {
		if c.got != c.want {
			t.Errorf("offsetof(%s) = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestIoctlNumbers(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"KVM_GET_API_VERSION", kvmGetAPIVersion, 0xae00},
		{"KVM_CREATE_VM", kvmCreateVM, 0xae01},
		{"KVM_GET_MSR_INDEX_LIST", kvmGetMSRIndexList, 0xc004ae02},
		{"KVM_CHECK_EXTENSION", kvmCheckExtension, 0xae03},
		{"KVM_GET_VCPU_MMAP_SIZE", kvmGetVCPUMmapSize, 0xae04},
		{"KVM_GET_SUPPORTED_CPUID", kvmGetSupportedCPUID, 0xc008ae05},
		{"KVM_CREATE_VCPU", kvmCreateVCPU, 0xae41},
		{"KVM_SET_USER_MEMORY_REGION", kvmSetUserMemoryRegion, 0x4020ae46},
		{"KVM_SET_TSS_ADDR", kvmSetTSSAddr, 0xae47},
		{"KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, 0x4008ae48},
		{"KVM_CREATE_IRQCHIP", kvmCreateIRQChip, 0xae60},
		{"KVM_IRQ_LINE", kvmIRQLine, 0x4008ae61},
		{"KVM_GET_IRQCHIP", kvmGetIRQChip, 0xc208ae62},
		{"KVM_SET_IRQCHIP", kvmSetIRQChip, 0x8208ae63},
		{"KVM_SET_GSI_ROUTING", kvmSetGSIRouting, 0x4008ae6a},
		{"KVM_IRQFD", kvmIRQFD, 0x4020ae76},
		{"KVM_CREATE_PIT2", kvmCreatePIT2, 0x4040ae77},
		{"KVM_IOEVENTFD", kvmIOEventFD, 0x4040ae79},
		{"KVM_SET_CLOCK", kvmSetClock, 0x4030ae7b},
		{"KVM_GET_CLOCK", kvmGetClock, 0x8030ae7c},
		{"KVM_GET_PIT2", kvmGetPIT2, 0x8070ae9f},
		{"KVM_SET_PIT2", kvmSetPIT2, 0x4070aea0},
		{"KVM_SIGNAL_MSI", kvmSignalMSI, 0x4020aea5},
		{"KVM_RUN", kvmRun, 0xae80},
		{"KVM_GET_REGS", kvmGetRegs, 0x8090ae81},
		{"KVM_SET_REGS", kvmSetRegs, 0x4090ae82},
		{"KVM_GET_SREGS", kvmGetSregs, 0x8138ae83},
		{"KVM_SET_SREGS", kvmSetSregs, 0x4138ae84},
		{"KVM_GET_MSRS", kvmGetMSRs, 0xc008ae88},
		{"KVM_SET_MSRS", kvmSetMSRs, 0x4008ae89},
		{"KVM_GET_FPU", kvmGetFPU, 0x81a0ae8c},
		{"KVM_SET_FPU", kvmSetFPU, 0x41a0ae8d},
		{"KVM_GET_LAPIC", kvmGetLAPIC, 0x8400ae8e},
		{"KVM_SET_LAPIC", kvmSetLAPIC, 0x4400ae8f},
		{"KVM_SET_CPUID2", kvmSetCPUID2, 0x4008ae90},
		{"KVM_GET_CPUID2", kvmGetCPUID2, 0xc008ae91},
		{"KVM_GET_MP_STATE", kvmGetMPState, 0x8004ae98},
		{"KVM_SET_MP_STATE", kvmSetMPState, 0x4004ae99},
		{"KVM_GET_VCPU_EVENTS", kvmGetVCPUEvents, 0x8040ae9f},
		{"KVM_SET_VCPU_EVENTS", kvmSetVCPUEvents, 0x4040aea0},
		{"KVM_GET_DEBUGREGS", kvmGetDebugRegs, 0x8080aea1},
		{"KVM_SET_DEBUGREGS", kvmSetDebugRegs, 0x4080aea2},
		{"KVM_GET_XSAVE", kvmGetXSAVE, 0x9000aea4},
		{"KVM_SET_XSAVE", kvmSetXSAVE, 0x5000aea5},
		{"KVM_GET_XSAVE2", kvmGetXSAVE2, 0x9000aecf},
		{"KVM_GET_XCRS", kvmGetXCRS, 0x8188aea6},
		{"KVM_SET_XCRS", kvmSetXCRS, 0x4188aea7},
		{"KVM_SET_TSC_KHZ", kvmSetTSCKHz, 0xaea2},
		{"KVM_GET_TSC_KHZ", kvmGetTSCKHz, 0xaea3},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

func TestCPUIDBufRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 3, 80} {
		in := make([]CPUIDEntry, n)
		for i := range in {
			in[i] = CPUIDEntry{Function: uint32(i), Index: uint32(i * 3), EAX: 0xA0 + uint32(i), EDX: ^uint32(i)}
		}
		buf := cpuidBufFrom(in)
		if want := 8 + 40*n; len(buf) != want {
			t.Fatalf("n=%d: buffer is %d bytes, want %d", n, len(buf), want)
		}
		out := cpuidEntries(buf)
		if len(out) != n {
			t.Fatalf("n=%d: got %d entries back", n, len(out))
		}
		for i := range in {
			if out[i] != in[i] {
				t.Fatalf("n=%d entry %d: got %+v, want %+v", n, i, out[i], in[i])
			}
		}
	}
}

func TestMSRBufRoundTrip(t *testing.T) {
	in := []MSREntry{{Index: 0x10, Data: 1}, {Index: 0xc0000080, Data: 0x500}, {Index: 0x174, Data: ^uint64(0)}}
	words := msrBuf(in)
	if got := (*msrsHeader)(unsafe.Pointer(&words[0])).NMSRs; got != 3 {
		t.Fatalf("nmsrs = %d, want 3", got)
	}
	out := msrEntries(words, len(in))
	for i := range in {
		if out[i] != in[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, out[i], in[i])
		}
	}
}

func TestLegacyRoutes(t *testing.T) {
	type key struct{ gsi, chip, pin uint32 }
	got := map[key]bool{}
	for _, r := range LegacyRoutes() {
		k := key{r.GSI, r.Chip, r.Pin}
		if got[k] {
			t.Errorf("duplicate route %+v", r)
		}
		got[k] = true
	}
	for _, c := range []struct {
		name string
		k    key
		want bool
	}{
		{"PIT to PIC pin 0", key{0, IRQChipPICMaster, 0}, true},
		{"PIT to IOAPIC pin 2 (MADT override)", key{0, IRQChipIOAPIC, 2}, true},
		{"no PIT on IOAPIC pin 0", key{0, IRQChipIOAPIC, 0}, false},
		{"GSI 2 not on IOAPIC pin 2", key{2, IRQChipIOAPIC, 2}, false},
		{"COM1 on PIC", key{4, IRQChipPICMaster, 4}, true},
		{"COM1 on IOAPIC", key{4, IRQChipIOAPIC, 4}, true},
		{"SCI on slave PIC", key{9, IRQChipPICSlave, 1}, true},
		{"SCI on IOAPIC", key{9, IRQChipIOAPIC, 9}, true},
		{"GSI 16 IOAPIC only", key{16, IRQChipIOAPIC, 16}, true},
		{"GSI 23 IOAPIC", key{23, IRQChipIOAPIC, 23}, true},
	} {
		if got[c.k] != c.want {
			t.Errorf("%s: route %+v present = %v, want %v", c.name, c.k, got[c.k], c.want)
		}
	}
	if n := len(got); n != 16+23 {
		t.Errorf("%d routes, want %d", n, 16+23)
	}
}

func TestExitReasonString(t *testing.T) {
	for _, c := range []struct {
		r    ExitReason
		want string
	}{
		{ExitIO, "KVM_EXIT_IO"}, {ExitShutdown, "KVM_EXIT_SHUTDOWN"},
		{ExitInternalError, "KVM_EXIT_INTERNAL_ERROR"}, {ExitReason(99), "KVM_EXIT(99)"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%d: %q, want %q", uint32(c.r), got, c.want)
		}
	}
}
