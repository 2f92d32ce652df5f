package kvm

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine. Its methods are safe for concurrent use, except
// that Close must not race with anything.
type VM struct {
	fd  int
	sys *System

	mu    sync.Mutex
	slots map[uint32]Slot
}

// Slot describes one registered memory slot.
type Slot struct {
	ID    uint32
	GPA   uint64
	Size  uint64
	Flags uint32
}

// CreateVM creates a VM.
func (s *System) CreateVM() (*VM, error) {
	if s.fd < 0 {
		return nil, ErrClosed
	}
	fd, err := ioctl(s.fd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("kvm: KVM_CREATE_VM: %w", err)
	}
	unix.CloseOnExec(int(fd))
	return &VM{fd: int(fd), sys: s, slots: map[uint32]Slot{}}, nil
}

// Close closes the VM's fd. Close its vCPUs first.
func (vm *VM) Close() error {
	if vm.fd < 0 {
		return nil
	}
	err := unix.Close(vm.fd)
	vm.fd = -1
	return err
}

// SetTSSAddr sets the guest-physical address of the three pages KVM uses for
// the real-mode TSS on Intel (KVM_SET_TSS_ADDR). Call before creating vCPUs.
func (vm *VM) SetTSSAddr(addr uint32) error {
	if _, err := ioctl(vm.fd, kvmSetTSSAddr, uintptr(addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_TSS_ADDR %#x: %w", addr, err)
	}
	return nil
}

// SetIdentityMapAddr sets the guest-physical address of the page KVM uses for
// the real-mode identity page table on Intel (KVM_SET_IDENTITY_MAP_ADDR).
// Call before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	if _, err := ioctlPtr(vm.fd, kvmSetIdentityMapAddr, unsafe.Pointer(&addr)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_IDENTITY_MAP_ADDR %#x: %w", addr, err)
	}
	return nil
}

// CreateIRQChip creates the in-kernel PIC pair, IOAPIC and per-vCPU local
// APICs (KVM_CREATE_IRQCHIP). Call before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	if _, err := ioctl(vm.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_IRQCHIP: %w", err)
	}
	return nil
}

// CreatePIT2 creates the in-kernel 8254 PIT with a dummy speaker port
// (KVM_CREATE_PIT2). Needs the irqchip.
func (vm *VM) CreatePIT2() error {
	cfg := pitConfig{Flags: pitSpeakerDummy}
	if _, err := ioctlPtr(vm.fd, kvmCreatePIT2, unsafe.Pointer(&cfg)); err != nil {
		return fmt.Errorf("kvm: KVM_CREATE_PIT2: %w", err)
	}
	return nil
}

// SetMemory registers mem as guest RAM at guest-physical address gpa in slot
// id (KVM_SET_USER_MEMORY_REGION). The mapping must be page-aligned and stay
// mapped until the slot is removed or the VM closed.
func (vm *VM) SetMemory(id uint32, gpa uint64, mem *Memory, flags uint32) error {
	page := uint64(os.Getpagesize())
	size := uint64(mem.Len())
	if gpa%page != 0 || size == 0 || size%page != 0 {
		return fmt.Errorf("kvm: memory slot %d at %#x size %#x: not page-aligned", id, gpa, size)
	}
	r := userspaceMemoryRegion{Slot: id, Flags: flags, GuestPhysAddr: gpa, MemorySize: size, UserspaceAddr: uint64(mem.addr())}
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("kvm: KVM_SET_USER_MEMORY_REGION slot %d gpa %#x size %#x: %w", id, gpa, size, err)
	}
	vm.mu.Lock()
	vm.slots[id] = Slot{ID: id, GPA: gpa, Size: size, Flags: flags}
	vm.mu.Unlock()
	return nil
}

// RemoveMemory deletes slot id (a zero-size region).
func (vm *VM) RemoveMemory(id uint32) error {
	r := userspaceMemoryRegion{Slot: id}
	if _, err := ioctlPtr(vm.fd, kvmSetUserMemoryRegion, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("kvm: remove memory slot %d: %w", id, err)
	}
	vm.mu.Lock()
	delete(vm.slots, id)
	vm.mu.Unlock()
	return nil
}

// Slots returns the registered memory slots.
func (vm *VM) Slots() []Slot {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	out := make([]Slot, 0, len(vm.slots))
	for _, s := range vm.slots {
		out = append(out, s)
	}
	return out
}

// checkExtension asks the VM fd (which may answer differently from
// /dev/kvm, e.g. for KVM_CAP_XSAVE2).
func (vm *VM) checkExtension(capability int) (int, error) {
	n, err := ioctl(vm.fd, kvmCheckExtension, uintptr(capability))
	if err != nil {
		return 0, fmt.Errorf("kvm: KVM_CHECK_EXTENSION %d on VM: %w", capability, err)
	}
	return int(n), nil
}
