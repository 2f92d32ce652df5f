package vmm

import (
	"fmt"

	"github.com/smolvm/smolvm/vmm/devices/virtio/vsock"
)

// createVsock adds the virtio-vsock device when Config.VsockPath is set: the
// guest is CID 3 and its host side is the unix socket at VsockPath (host
// clients write "CONNECT <port>\n"; guest connections to host port P reach
// VsockPath_P). It comes after the disks, the rng and the network, so its PCI slot is the
// same in every machine built from one Config.
func (m *Machine) createVsock() error {
	if m.cfg.VsockPath == "" {
		return nil
	}
	mc := vsock.MuxConfig{Path: m.cfg.VsockPath}
	if w := m.cfg.Log; w != nil {
		mc.Logf = func(format string, args ...any) { fmt.Fprintf(w, "smolvm: "+format+"\n", args...) }
	}
	dev, err := vsock.New(mc)
	if err != nil {
		return fmt.Errorf("%w: vsock: %w", ErrConfig, err)
	}
	vd, err := m.addVirtio("vsock", dev, 0, dev.Close)
	if err != nil {
		dev.Close()
		return err
	}
	// Connections do not survive a snapshot (the host sockets belong to
	// the old process) and the CID is fixed, so nothing is saved; a
	// restored device drops its connections and sends the guest
	// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
	vd.restore = func(VirtioState) error { return dev.Restore(dev.Save()) }
	return nil
}
