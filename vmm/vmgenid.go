package vmm

import (
	"crypto/rand"
	"fmt"
	"os"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/devices/vmgenid"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// vmgenidSlot is the KVM memory slot of the generation ID page (RAM uses
// slots 0 and 1).
const vmgenidSlot = 8

// createVMGenID maps the generation ID page at amd64.VMGenIDAddr: memory of
// its own, outside guest RAM, so it is never saved in a snapshot, never
// demand paged and written here without a fault. The first ID is written at
// once: a booting guest's driver reads it when it probes.
func (m *Machine) createVMGenID() error {
	mem, err := kvm.AllocMemory(int64(os.Getpagesize()))
	if err != nil {
		return err
	}
	m.vmgenidMem = mem
	if err := m.vm.SetMemory(vmgenidSlot, amd64.VMGenIDAddr, mem, 0); err != nil {
		return err
	}
	if m.vmgenid, err = vmgenid.New(mem.Bytes(), m.vm.IRQLine(amd64.ISAGSI(amd64.VMGenIDIRQ))); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	if _, err := m.vmgenid.Generate(rand.Reader); err != nil {
		return fmt.Errorf("vmm: %w", err)
	}
	return nil
}

// newGeneration gives a restored guest a fresh generation ID and interrupts
// it (the ACPI GED runs Notify(VGEN, 0x80)): Linux's vmgenid driver then
// reseeds the RNG. A guest without the driver ignores the interrupt.
func (m *Machine) newGeneration() error {
	if _, err := m.vmgenid.Generate(rand.Reader); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	if err := m.vmgenid.Notify(); err != nil {
		return fmt.Errorf("vmm: restore: %w", err)
	}
	return nil
}

// VMGenID returns the generation ID the guest sees now and the device's
// counters.
func (m *Machine) VMGenID() (vmgenid.ID, vmgenid.Stats) {
	return m.vmgenid.ID(), m.vmgenid.Stats()
}
