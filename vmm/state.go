package vmm

import (
	"fmt"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/devices/acpi"
	"github.com/smolvm/smolvm/vmm/devices/i8042"
	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/serial"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// State is everything but guest memory that a paused machine needs to
// continue elsewhere: KVM's VM-wide and per-vCPU state and each device's
// own State. Guest memory is saved by its owner (RAM).
type State struct {
	VM     kvm.VMState
	VCPUs  []kvm.VCPUState
	Serial serial.State
	I8042  i8042.State
	ACPI   acpi.State
	PCI    pci.State
	Virtio []VirtioState // virtio.go
}

// RAMRegion is one region of guest RAM and its host mapping.
type RAMRegion struct {
	GPA  uint64
	Data []byte
}

// RAM returns guest memory, for the snapshot writer (while paused) or to
// fill a machine before RestoreState. The slices are valid until Close.
func (m *Machine) RAM() []RAMRegion {
	var out []RAMRegion
	for i, r := range amd64.RAMRegions(uint64(m.cfg.MemBytes)) {
		out = append(out, RAMRegion{GPA: r.GuestAddr, Data: m.mem[i].Bytes()})
	}
	return out
}

// parkedAll reports whether every vCPU waits in the pause gate.
func (m *Machine) parkedAll() bool {
	m.pause.mu.Lock()
	defer m.pause.mu.Unlock()
	return m.pause.resume != nil && m.pause.parked == len(m.vcpus)
}

// SaveState reads the state of a paused machine.
func (m *Machine) SaveState() (*State, error) {
	if !m.parkedAll() {
		return nil, fmt.Errorf("vmm: save: %w: pause the machine first", ErrNotRunning)
	}
	msrs, err := m.sys.MSRIndexList()
	if err != nil {
		return nil, fmt.Errorf("vmm: save: %w", err)
	}
	st := &State{}
	if st.VM, err = m.vm.SaveState(); err != nil {
		return nil, fmt.Errorf("vmm: save: %w", err)
	}
	for _, v := range m.vcpus {
		vs, err := v.SaveState(msrs)
		if err != nil {
			return nil, fmt.Errorf("vmm: %w", err)
		}
		st.VCPUs = append(st.VCPUs, vs)
	}
	st.Serial = m.serial.Save()
	st.I8042 = m.i8042.Save()
	st.ACPI = m.acpi.Save()
	st.PCI = m.pci.Save()
	if st.Virtio, err = m.saveVirtio(); err != nil {
		return nil, err
	}
	return st, nil
}

// RestoreState loads st into a machine that New built from the same Config
// and that has not run; fill its RAM first. Run then continues the guest
// where it was saved, with a new VM generation ID (vmgenid.go).
func (m *Machine) RestoreState(st *State) error {
	m.mu.Lock()
	ran := m.ran || m.closed
	m.mu.Unlock()
	if ran {
		return fmt.Errorf("%w: restore into a machine that already ran", ErrClosed)
	}
	if len(st.VCPUs) != len(m.vcpus) {
		return fmt.Errorf("%w: saved state has %d vCPUs, this machine %d", ErrConfig, len(st.VCPUs), len(m.vcpus))
	}
	if err := m.vm.RestoreState(st.VM); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	for i, v := range m.vcpus {
		if err := v.RestoreState(st.VCPUs[i]); err != nil {
			return fmt.Errorf("vmm: %w", err)
		}
	}
	if err := m.serial.Restore(st.Serial); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	if err := m.i8042.Restore(st.I8042); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	if err := m.acpi.Restore(st.ACPI); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	if err := m.pci.Restore(st.PCI); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	if err := m.restoreVirtio(st.Virtio); err != nil {
		return err
	}
	// Every restore is a new generation of the guest (a clone, or a
	// resume that must not reuse random state): last, once the irqchip and
	// LAPICs hold their saved state, so the interrupt is not overwritten.
	return m.newGeneration()
}
