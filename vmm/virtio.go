package vmm

import (
	"errors"
	"fmt"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
	"github.com/smolvm/smolvm/vmm/devices/pci"
	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/devices/virtio/blk"
	"github.com/smolvm/smolvm/vmm/devices/virtio/rng"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// virtioDevice is one virtio device on the PCI bus.
type virtioDevice struct {
	name   string // "vda", "rng", "vsock": for errors and state
	slot   int
	trans  *virtio.Transport
	notify *notifier // queue notifications by ioeventfd (virtio_notify.go)
	// close releases what the device uses besides its goroutines (a disk),
	// after the transport stopped them.
	close func() error
	// save and restore carry the device's own State in a VirtioState (nil
	// for a device with none).
	save    func(*VirtioState)
	restore func(VirtioState) error
}

// guestMemory is virtio.DirectMemory over the machine's RAM regions. RAM is
// anonymous memory or memory whose faults another process serves (the
// pager), so device goroutines may touch it.
type guestMemory struct {
	regions []RAMRegion
}

func (g *guestMemory) span(gpa uint64, n int) ([]byte, error) {
	for _, r := range g.regions {
		if gpa >= r.GPA && gpa-r.GPA <= uint64(len(r.Data)) && uint64(n) <= uint64(len(r.Data))-(gpa-r.GPA) {
			off := gpa - r.GPA
			return r.Data[off : off+uint64(n)], nil
		}
	}
	return nil, &virtio.AddressError{Addr: gpa, Len: n}
}

// Slice returns guest memory at [gpa, gpa+n) itself, for zero-copy disk
// I/O.
func (g *guestMemory) Slice(gpa uint64, n int) ([]byte, error) { return g.span(gpa, n) }

// Read copies guest memory at gpa into p.
func (g *guestMemory) Read(gpa uint64, p []byte) error {
	b, err := g.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// Write copies p into guest memory at gpa.
func (g *guestMemory) Write(gpa uint64, p []byte) error {
	b, err := g.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(b, p)
	return nil
}

// pciInterrupt is virtio.Interrupt for a function at a slot: MSI through
// KVM_SIGNAL_MSI, INTx on the slot's INTA# GSI.
type pciInterrupt struct {
	vm  *kvm.VM
	gsi uint32
}

func (p *pciInterrupt) SignalMSI(addr uint64, data uint32) error { return p.vm.SignalMSI(addr, data) }
func (p *pciInterrupt) SetINTx(high bool) error                  { return p.vm.SetIRQLevel(p.gsi, high) }

// addVirtio puts dev on the next free PCI slot behind a virtio-pci
// transport; the caller may set the returned device's save/restore hooks. closeFn (may be nil) runs at Close after the device stopped.
// On error closeFn is not called: the caller still owns what it closes.
func (m *Machine) addVirtio(name string, dev virtio.Device, class uint32, closeFn func() error) (*virtioDevice, error) {
	slot, err := m.pci.FreeSlot()
	if err != nil {
		return nil, fmt.Errorf("vmm: %s: %w", name, err)
	}
	var regions []RAMRegion
	for i, r := range amd64.RAMRegions(uint64(m.cfg.MemBytes)) {
		regions = append(regions, RAMRegion{GPA: r.GuestAddr, Data: m.mem[i].Bytes()})
	}
	t, err := virtio.NewTransport(virtio.TransportConfig{
		Device: dev, Mem: &guestMemory{regions: regions}, ClassCode: class,
		IRQ: &pciInterrupt{vm: m.vm, gsi: pci.INTxGSI(slot, 1)},
	})
	if err != nil {
		return nil, fmt.Errorf("vmm: %s: %w", name, err)
	}
	n, err := newNotifier(m.vm, t)
	if err != nil {
		return nil, err
	}
	if err := m.pci.AddDevice(slot, t); err != nil {
		n.close()
		return nil, fmt.Errorf("vmm: %s: %w", name, err)
	}
	t.OnBARMapped(n.mapped)
	vd := &virtioDevice{name: name, slot: slot, trans: t, notify: n, close: closeFn}
	m.virtio = append(m.virtio, vd)
	return vd, nil
}

// closeVirtio stops every virtio device and releases its backing.
func (m *Machine) closeVirtio() error {
	var errs []error
	for _, d := range m.virtio {
		errs = append(errs, d.notify.close(), d.trans.Close())
		if d.close != nil {
			errs = append(errs, d.close())
		}
	}
	m.virtio = nil
	return errors.Join(errs...)
}

// VirtioState is one virtio device's saved state: its transport's and, in
// the field for its kind, the device's own.
type VirtioState struct {
	Name      string
	Slot      int
	Transport virtio.State
	Blk       *blk.State `json:",omitempty"`
	RNG       *rng.State `json:",omitempty"`
}

// pauseVirtio stops the virtio devices' goroutines (a machine pause, before
// a snapshot); resumeVirtio restarts them. A device stuck in I/O fails the
// pause (bounded by virtio.StopTimeout) and the others are resumed.
func (m *Machine) pauseVirtio() error {
	for i, d := range m.virtio {
		if err := d.trans.Pause(); err != nil {
			for _, p := range m.virtio[:i+1] {
				p.trans.Resume()
			}
			return fmt.Errorf("vmm: pause %s: %w", d.name, err)
		}
	}
	return nil
}

func (m *Machine) resumeVirtio() {
	for _, d := range m.virtio {
		d.trans.Resume()
	}
}

// saveVirtio returns the transport states; call between pauseVirtio and
// resumeVirtio.
func (m *Machine) saveVirtio() ([]VirtioState, error) {
	var out []VirtioState
	for _, d := range m.virtio {
		st, err := d.trans.Save()
		if err != nil {
			return nil, fmt.Errorf("vmm: save %s: %w", d.name, err)
		}
		vs := VirtioState{Name: d.name, Slot: d.slot, Transport: st}
		if d.save != nil {
			d.save(&vs)
		}
		out = append(out, vs)
	}
	return out, nil
}

// restoreVirtio loads transport states into a machine built from the same
// Config, after the PCI host was restored.
func (m *Machine) restoreVirtio(sts []VirtioState) error {
	if len(sts) != len(m.virtio) {
		return fmt.Errorf("%w: %d saved virtio devices, this machine has %d", ErrConfig, len(sts), len(m.virtio))
	}
	for i, d := range m.virtio {
		if sts[i].Name != d.name || sts[i].Slot != d.slot {
			return fmt.Errorf("%w: saved virtio device %d is %s at slot %d, this machine has %s at slot %d",
				ErrConfig, i, sts[i].Name, sts[i].Slot, d.name, d.slot)
		}
		if d.restore != nil {
			if err := d.restore(sts[i]); err != nil {
				return fmt.Errorf("vmm: restore %s: %w", d.name, err)
			}
		}
		if err := d.trans.Restore(sts[i].Transport); err != nil {
			return fmt.Errorf("vmm: restore %s: %w", d.name, err)
		}
	}
	return nil
}
