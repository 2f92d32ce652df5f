package vmm

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// MemoryBacking says what backs guest RAM. The zero value is private
// anonymous memory: zero-filled, or filled by the caller before Run (an
// eager restore writes every page; a lazy one registers the regions with a
// userfaultfd whose faults another process serves). File maps an image of
// guest RAM instead.
type MemoryBacking struct {
	// File, if set, is mapped MAP_PRIVATE|MAP_NORESERVE, readable and
	// writable: region i of amd64.RAMRegions comes from the file at
	// RAMFileOffset(i); the guest's writes stay private to this machine.
	// The file is normally the memory file of a bundle mounted by
	// smolmount, which must be served by another process (a process never
	// faults on memory it serves).
	File string
}

// RAMFileOffset is where region i of amd64.RAMRegions(memBytes) starts in
// a guest RAM image: the regions are stored back to back, so the image is
// exactly memBytes long and a guest address above 4 GiB sits at
// gpa - (4 GiB - 3 GiB) in it.
func RAMFileOffset(memBytes int64, i int) int64 {
	var off int64
	for j, r := range amd64.RAMRegions(uint64(memBytes)) {
		if j == i {
			break
		}
		off += int64(r.Size)
	}
	return off
}

// NewRestore builds a machine to be restored rather than booted: the VM,
// its memory (Config.Memory), devices and vCPUs as New makes them, but no
// kernel, initrd or firmware tables are written into RAM and Config.Kernel
// is not needed. The caller fills RAM if it is anonymous (or has it paged
// in lazily), calls RestoreState with the saved state and then Run. The
// devices must be those of the saved machine, in the same order: the same
// disks, and Net and VsockPath set exactly when it had them.
func NewRestore(cfg Config) (_ *Machine, err error) {
	if err := cfg.validateMachine(); err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg}
	m.stop.init()
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	if err := m.allocMemory(); err != nil {
		return nil, err
	}
	if err := m.assemble(); err != nil {
		return nil, err
	}
	return m, nil
}

// mapMemoryFile maps each RAM region from Config.Memory.File. The file
// must hold at least MemBytes bytes.
func (m *Machine) mapMemoryFile() error {
	path := m.cfg.Memory.File
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: memory file: %w", ErrConfig, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: memory file: %w", ErrConfig, err)
	}
	if fi.Size() < m.cfg.MemBytes {
		return fmt.Errorf("%w: memory file %s holds %d bytes, the machine has %d bytes of RAM", ErrConfig, path, fi.Size(), m.cfg.MemBytes)
	}
	for i, r := range amd64.RAMRegions(uint64(m.cfg.MemBytes)) {
		off := RAMFileOffset(m.cfg.MemBytes, i)
		b, err := unix.Mmap(int(f.Fd()), off, int(r.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_NORESERVE)
		if err != nil {
			return fmt.Errorf("vmm: map %s [%#x, +%#x) for guest RAM at %#x: %w", path, off, r.Size, r.GuestAddr, err)
		}
		m.mem = append(m.mem, kvm.WrapMemory(b))
		m.unmap = append(m.unmap, func() error { return unix.Munmap(b) })
	}
	return nil
}

// unmapFiles undoes mapMemoryFile's mappings (after the memory slots are
// gone with the VM).
func (m *Machine) unmapFiles() error {
	var errs []error
	for _, f := range m.unmap {
		errs = append(errs, f())
	}
	m.unmap = nil
	return errors.Join(errs...)
}

// HostCPUID is the CPUID table this host's KVM supports
// (KVM_GET_SUPPORTED_CPUID): what a restore checks a saved guest's CPU
// features against.
func HostCPUID() ([]kvm.CPUIDEntry, error) {
	sys, err := kvm.Open()
	if err != nil {
		return nil, err
	}
	defer sys.Close()
	return sys.SupportedCPUID()
}
