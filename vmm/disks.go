package vmm

import (
	"fmt"

	"github.com/smolvm/smolvm/vmm/devices/virtio/blk"
	"github.com/smolvm/smolvm/vmm/devices/virtio/rng"
	"github.com/smolvm/smolvm/vmm/disk"
)

// DiskConfig is one virtio-blk disk. Disks appear in the guest in Config
// order: the first is /dev/vda.
type DiskConfig struct {
	// Name identifies the disk (its GET_ID serial, at most 20 bytes).
	Name string
	// Path is the image file (or block device).
	Path string
	// Mode is rw (default), ro or cow.
	Mode disk.Mode
	// OverlayPath is where a cow disk keeps its writes (the data file; its
	// block map is OverlayPath + disk.MapSuffix). Required for cow.
	OverlayPath string
}

func (d DiskConfig) validate(i int, seen map[string]bool) error {
	switch {
	case d.Name == "" || len(d.Name) > blk.IDLen:
		return fmt.Errorf("%w: disk %d: name %q (want 1-%d bytes)", ErrConfig, i, d.Name, blk.IDLen)
	case seen[d.Name]:
		return fmt.Errorf("%w: disk name %q used twice", ErrConfig, d.Name)
	case d.Path == "":
		return fmt.Errorf("%w: disk %s has no path", ErrConfig, d.Name)
	}
	seen[d.Name] = true
	if _, err := disk.ParseMode(string(d.Mode)); err != nil {
		return fmt.Errorf("%w: disk %s: %w", ErrConfig, d.Name, err)
	}
	if d.Mode == disk.ModeCOW && d.OverlayPath == "" {
		return fmt.Errorf("%w: cow disk %s has no overlay path", ErrConfig, d.Name)
	}
	return nil
}

// createDisks opens each configured disk and adds a virtio-blk device for
// it, in order, then the entropy device.
func (m *Machine) createDisks() error {
	for _, dc := range m.cfg.Disks {
		mode, _ := disk.ParseMode(string(dc.Mode))
		dk, err := disk.Open(dc.Path, mode, dc.OverlayPath)
		if err != nil {
			return fmt.Errorf("%w: disk %s: %w", ErrConfig, dc.Name, err)
		}
		dev, err := blk.New(blk.Config{Disk: dk, ID: dc.Name})
		if err != nil {
			dk.Close()
			return fmt.Errorf("%w: disk %s: %w", ErrConfig, dc.Name, err)
		}
		vd, err := m.addVirtio("disk "+dc.Name, dev, blk.PCIClass, dk.Close)
		if err != nil {
			dk.Close()
			return err
		}
		m.disks = append(m.disks, DiskImage{Name: dc.Name, Disk: dk})
		vd.save = func(s *VirtioState) { st := dev.Save(); s.Blk = &st }
		vd.restore = func(s VirtioState) error {
			if s.Blk == nil {
				return fmt.Errorf("%w: no blk state", ErrConfig)
			}
			return dev.Restore(*s.Blk)
		}
	}
	r := rng.New(nil)
	vd, err := m.addVirtio("rng", r, 0, nil)
	if err != nil {
		return err
	}
	vd.save = func(s *VirtioState) { st := r.Save(); s.RNG = &st }
	vd.restore = func(s VirtioState) error {
		if s.RNG == nil {
			return fmt.Errorf("%w: no rng state", ErrConfig)
		}
		return r.Restore(*s.RNG)
	}
	return nil
}
