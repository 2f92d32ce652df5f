package amd64

// MSR is one model-specific register and its value (kvm_msr_entry).
type MSR struct {
	Index uint32
	Data  uint64
}

// MSR indexes used at boot.
const (
	MSRIA32TSC         = 0x00000010
	MSRIA32SysenterCS  = 0x00000174
	MSRIA32SysenterESP = 0x00000175
	MSRIA32SysenterEIP = 0x00000176
	MSRIA32MiscEnable  = 0x000001A0
	MSRMTRRDefType     = 0x000002FF
	MSRSTAR            = 0xC0000081
	MSRLSTAR           = 0xC0000082
	MSRCSTAR           = 0xC0000083
	MSRSyscallMask     = 0xC0000084
	MSRKernelGSBase    = 0xC0000102
	MiscEnableFastStr  = 1 << 0  // IA32_MISC_ENABLE: fast string operations
	MTRRDefTypeEnable  = 1 << 11 // IA32_MTRR_DEF_TYPE.E: MTRRs enabled
	MTRRTypeWriteBack  = 6
)

// BootMSRs returns the MSR values every vCPU starts with: the SYSENTER and
// SYSCALL MSRs and KERNEL_GS_BASE zero (the kernel sets them), fast strings
// enabled in IA32_MISC_ENABLE, and MTRRs enabled with write-back as the
// default type (so all RAM is cacheable without variable MTRRs).
//
// IA32_TSC is not in the list: KVM already synchronises the TSCs of vCPUs
// it creates, and a VMM that wants TSC 0 at boot can append
// MSR{MSRIA32TSC, 0} to every vCPU's list.
func BootMSRs() []MSR {
	return []MSR{
		{MSRIA32SysenterCS, 0},
		{MSRIA32SysenterESP, 0},
		{MSRIA32SysenterEIP, 0},
		{MSRSTAR, 0},
		{MSRLSTAR, 0},
		{MSRCSTAR, 0},
		{MSRSyscallMask, 0},
		{MSRKernelGSBase, 0},
		{MSRIA32MiscEnable, MiscEnableFastStr},
		{MSRMTRRDefType, MTRRDefTypeEnable | MTRRTypeWriteBack},
	}
}
