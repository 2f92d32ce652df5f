package amd64

import (
	"fmt"
	"strings"

	"github.com/smolvm/smolvm/vmm/arch/amd64/acpi"
)

// BootConfig is what SetupBoot needs to prepare a direct 64-bit boot.
type BootConfig struct {
	Kernel  *BzImage
	Initrd  []byte // may be empty
	Cmdline string
	// MemSize is the total guest RAM (see RAMRegions).
	MemSize uint64
	// CPUs is the number of vCPUs the ACPI tables describe.
	CPUs int
}

// BootInfo is where SetupBoot put things.
type BootInfo struct {
	// Entry is the 64-bit entry point (load address + 0x200): the boot
	// vCPU's RIP. ZeroPage is its RSI.
	Entry    uint64
	ZeroPage uint64
	// KernelAddr is the load address; KernelEnd the end of the memory the
	// kernel needs (load address + init_size, see BzImage.MemoryEnd).
	KernelAddr, KernelEnd  uint64
	InitrdAddr, InitrdSize uint64
	CmdlineAddr            uint64
	ACPI                   acpi.Tables
	E820                   []E820Entry
}

// pageSize is the initrd's alignment.
const pageSize = 0x1000

// defaultInitrdAddrMax is the protocol's initrd limit for kernels that do
// not state one (before 2.03).
const defaultInitrdAddrMax = 0x37FFFFFF

// SetupBoot prepares guest memory for a direct 64-bit boot of cfg.Kernel.
// mem is low guest RAM indexed by physical address and must be at least
// LowRAMSize(cfg.MemSize) bytes and zero where nothing is written (a fresh
// anonymous mapping is). It writes the protected-mode kernel at its load
// address, the command line at CmdlineAddr, the initrd at the highest page
// below min(initrd_addr_max, top of low RAM), the ACPI tables from ACPIAddr,
// the zero page with its e820 map at ZeroPageAddr, the GDT, the identity
// page tables and the reset stub at ResetVectorAddr. Then the boot vCPU
// takes BootRegs(info.Entry, info.ZeroPage) and BootSregs().
func SetupBoot(mem []byte, cfg BootConfig) (BootInfo, error) {
	var info BootInfo
	k := cfg.Kernel
	if k == nil {
		return info, fmt.Errorf("amd64: boot: no kernel: %w", ErrInvalidConfig)
	}
	if cfg.CPUs < 1 || cfg.CPUs > MaxCPUs {
		return info, fmt.Errorf("amd64: boot: %d vCPUs, want 1..%d: %w", cfg.CPUs, MaxCPUs, ErrInvalidConfig)
	}
	low := LowRAMSize(cfg.MemSize)
	if uint64(len(mem)) < low {
		return info, fmt.Errorf("amd64: boot: low RAM slice is %#x bytes, guest has %#x below the PCI hole: %w", len(mem), low, ErrInvalidConfig)
	}
	mem = mem[:low]
	e820, err := E820Map(cfg.MemSize)
	if err != nil {
		return info, err
	}
	info.E820 = e820

	// Kernel.
	info.KernelAddr = k.LoadAddr()
	info.KernelEnd = k.MemoryEnd()
	if info.KernelEnd > low {
		return info, fmt.Errorf("amd64: boot: kernel needs memory up to %#x (load %#x + init_size %#x), guest has %d MiB below %#x: %w",
			info.KernelEnd, max(info.KernelAddr, k.PrefAddress), k.InitSize, low>>20, low, ErrMemoryTooSmall)
	}
	copy(mem[info.KernelAddr:], k.Kernel)
	info.Entry = info.KernelAddr + KernelEntryOffset

	// Command line.
	if err := checkCmdline(cfg.Cmdline, k.CmdlineSize); err != nil {
		return info, err
	}
	info.CmdlineAddr = CmdlineAddr
	n := copy(mem[CmdlineAddr:], cfg.Cmdline)
	mem[CmdlineAddr+n] = 0

	// Initrd.
	if len(cfg.Initrd) > 0 {
		limit := uint64(k.InitrdAddrMax)
		if limit == 0 {
			limit = defaultInitrdAddrMax
		}
		top := min(limit+1, low)
		size := uint64(len(cfg.Initrd))
		if size > top || (top-size)&^(pageSize-1) < info.KernelEnd {
			return info, fmt.Errorf("amd64: boot: initrd of %d bytes does not fit between the kernel's end %#x and %#x (min of initrd_addr_max %#x and low RAM top %#x): %w",
				size, info.KernelEnd, top, limit, low, ErrMemoryTooSmall)
		}
		info.InitrdAddr = (top - size) &^ (pageSize - 1)
		info.InitrdSize = size
		copy(mem[info.InitrdAddr:], cfg.Initrd)
	}

	// Firmware tables and boot structures.
	info.ACPI, err = acpi.Build(mem[:ACPIEnd], ACPIAddr, ACPIConfig(cfg.CPUs))
	if err != nil {
		return info, fmt.Errorf("amd64: boot: %w", err)
	}
	info.ZeroPage = ZeroPageAddr
	if err := WriteBootParams(mem, ZeroPageAddr, BootParams{
		Header:      k.Header,
		CmdlineAddr: info.CmdlineAddr,
		InitrdAddr:  info.InitrdAddr,
		InitrdSize:  info.InitrdSize,
		E820:        e820,
		RSDPAddr:    info.ACPI.RSDP,
	}); err != nil {
		return info, err
	}
	if err := WriteGDT(mem); err != nil {
		return info, err
	}
	if err := WritePageTables(mem); err != nil {
		return info, err
	}
	if err := WriteResetVector(mem); err != nil {
		return info, err
	}
	return info, nil
}

func checkCmdline(s string, kernelMax uint32) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("amd64: boot: kernel command line contains a NUL byte: %w", ErrInvalidConfig)
	}
	if len(s)+1 > CmdlineMax {
		return fmt.Errorf("amd64: boot: kernel command line is %d bytes, at most %d fit at %#x: %w", len(s), CmdlineMax-1, CmdlineAddr, ErrCmdlineTooLong)
	}
	if kernelMax != 0 && uint64(len(s)) > uint64(kernelMax) {
		return fmt.Errorf("amd64: boot: kernel command line is %d bytes, the kernel takes at most %d (cmdline_size): %w", len(s), kernelMax, ErrCmdlineTooLong)
	}
	return nil
}

// ACPIConfig returns the ACPI table configuration of this machine layout
// with ncpus vCPUs.
func ACPIConfig(ncpus int) acpi.Config {
	return acpi.Config{
		CPUs:             ncpus,
		LAPICAddr:        LAPICAddr,
		IOAPICAddr:       IOAPICAddr,
		IOAPICID:         IOAPICID(ncpus),
		SCI:              SCIIRQ,
		SleepControlPort: ACPISleepControlPort,
		SleepStatusPort:  ACPISleepStatusPort,
		ResetPort:        ACPIResetPort,
		ResetValue:       ACPIResetValue,
		S5SleepType:      ACPIS5SleepType,
		PCIConfigPort:    PCIConfigPort,
		PCIMMIOBase:      PCIMMIOStart,
		PCIMMIOEnd:       PCIMMIOEnd,
		PCIIntxGSIBase:   PCIIntxGSIBase,
		COM1Port:         COM1Port,
		COM1IRQ:          COM1IRQ,
		VMGenIDAddr:      VMGenIDAddr,
		VMGenIDGSI:       ISAGSI(VMGenIDIRQ),
	}
}
