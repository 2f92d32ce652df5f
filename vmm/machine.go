package vmm

import (
	"errors"
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/devices"
	"github.com/smolvm/smolvm/vmm/devices/acpi"
	"github.com/smolvm/smolvm/vmm/devices/i8042"
	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/serial"
	"github.com/smolvm/smolvm/vmm/devices/vmgenid"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// Addresses KVM needs on Intel for real-mode emulation, in the 32-bit hole
// above the LAPIC where no RAM or device lives.
const (
	tssAddr         = 0xFFFBD000 // three pages
	identityMapAddr = 0xFFFBC000 // one page
)

// Machine is a booted-to-be VM: KVM objects, guest memory, devices and vCPUs.
// New assembles it; Run runs it once; Close releases everything.
type Machine struct {
	cfg Config

	sys   *kvm.System
	vm    *kvm.VM
	mem   []*kvm.Memory  // one per amd64.RAMRegions entry; mem[0] is low RAM
	unmap []func() error // file mappings behind mem (restore.go)
	vcpus []*kvm.VCPU
	boot  amd64.BootInfo

	bus    *devices.Bus
	serial *serial.Serial
	i8042  *i8042.Controller
	acpi   *acpi.Device
	pci    *pci.Host
	// vmgenid and its page, outside guest RAM (vmgenid.go).
	vmgenid    *vmgenid.Device
	vmgenidMem *kvm.Memory
	virtio     []*virtioDevice // disks, rng, vsock (virtio.go)
	disks      []DiskImage     // open disks in guest order (snapshot_source.go)

	stop  stopper
	pause pauseGate // Pause/Resume (control.go)

	mu      sync.Mutex
	ran     bool
	closed  bool
	runDone chan struct{} // closed when Run returns; nil before Run
}

// New checks cfg, creates the VM with its memory, loads the kernel, initrd
// and firmware tables, and sets up the devices and vCPUs. On error nothing is
// left open.
func New(cfg Config) (_ *Machine, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	kernelFile, err := readFile("kernel", cfg.Kernel)
	if err != nil {
		return nil, err
	}
	kernel, err := amd64.ParseBzImage(kernelFile)
	if err != nil {
		return nil, fmt.Errorf("%w: kernel %s: %w", ErrConfig, cfg.Kernel, err)
	}
	var initrd []byte
	if cfg.Initrd != "" {
		if initrd, err = readFile("initrd", cfg.Initrd); err != nil {
			return nil, err
		}
	}

	m := &Machine{cfg: cfg}
	m.stop.init()
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	// Memory and boot setup first: they need no /dev/kvm, so a kernel that
	// does not fit fails the same way on any host.
	if err := m.allocMemory(); err != nil {
		return nil, err
	}
	m.boot, err = amd64.SetupBoot(m.mem[0].Bytes(), amd64.BootConfig{
		Kernel: kernel, Initrd: initrd, Cmdline: cfg.Cmdline, MemSize: uint64(cfg.MemBytes), CPUs: cfg.CPUs,
	})
	if err != nil {
		if errors.Is(err, amd64.ErrMemoryTooSmall) || errors.Is(err, amd64.ErrCmdlineTooLong) || errors.Is(err, amd64.ErrInvalidConfig) {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		return nil, fmt.Errorf("vmm: boot setup: %w", err)
	}
	if err := m.assemble(); err != nil {
		return nil, err
	}
	return m, nil
}

// assemble creates the VM over m.mem, the devices and the vCPUs (New, and
// NewRestore in restore.go).
func (m *Machine) assemble() error {
	if err := m.createVM(); err != nil {
		return err
	}
	if err := m.createDevices(); err != nil {
		return err
	}
	if err := m.createVMGenID(); err != nil {
		return err
	}
	if err := m.createDisks(); err != nil {
		return err
	}
	if err := m.createNet(); err != nil {
		return err
	}
	if err := m.createVsock(); err != nil {
		return err
	}
	return m.createVCPUs()
}

func (m *Machine) createVM() error {
	sys, err := kvm.Open()
	if err != nil {
		return err
	}
	m.sys = sys
	if m.vm, err = sys.CreateVM(); err != nil {
		return err
	}
	if err := m.vm.SetTSSAddr(tssAddr); err != nil {
		return err
	}
	if err := m.vm.SetIdentityMapAddr(identityMapAddr); err != nil {
		return err
	}
	if err := m.vm.CreateIRQChip(); err != nil {
		return err
	}
	// The MADT says ISA IRQ0 arrives at GSI 2; route KVM's GSIs to match.
	if err := m.vm.SetGSIRouting(kvm.LegacyRoutes()); err != nil {
		return err
	}
	if err := m.vm.CreatePIT2(); err != nil {
		return err
	}
	for i, r := range amd64.RAMRegions(uint64(m.cfg.MemBytes)) {
		if err := m.vm.SetMemory(uint32(i), r.GuestAddr, m.mem[i], 0); err != nil {
			return err
		}
	}
	return nil
}

// allocMemory maps guest RAM, one anonymous mapping per region of the
// layout (below the PCI hole, and above 4 GiB when there is more).
func (m *Machine) allocMemory() error {
	if m.cfg.Memory.File != "" {
		return m.mapMemoryFile() // restore.go
	}
	for _, r := range amd64.RAMRegions(uint64(m.cfg.MemBytes)) {
		mem, err := kvm.AllocMemory(int64(r.Size))
		if err != nil {
			return err
		}
		m.mem = append(m.mem, mem)
	}
	return nil
}

// Close releases vCPUs, the VM, guest memory and devices. It must not run
// concurrently with Run.
func (m *Machine) Close() error {
	if err := m.stopRun(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	errs = append(errs, m.closeVirtio()) // before the VM: devices signal through it
	for _, v := range m.vcpus {
		errs = append(errs, v.Close())
	}
	if m.serial != nil {
		errs = append(errs, m.serial.Close())
	}
	if m.vm != nil {
		errs = append(errs, m.vm.Close())
	}
	for _, mem := range m.mem {
		errs = append(errs, mem.Close())
	}
	if m.vmgenidMem != nil {
		errs = append(errs, m.vmgenidMem.Close())
	}
	errs = append(errs, m.unmapFiles())
	if m.sys != nil {
		errs = append(errs, m.sys.Close())
	}
	return errors.Join(errs...)
}

// Boot returns where the kernel, initrd, command line and tables were put.
func (m *Machine) Boot() amd64.BootInfo { return m.boot }
