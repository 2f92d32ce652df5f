package pci

import "fmt"

// Host bridge identity. 8086:0d57 is the ID other VMMs (Cloud Hypervisor,
// Firecracker) give their virtual host bridge; Linux has no quirk for it and
// its class (0x060000, host bridge) is what Linux's conf1 sanity check looks
// for.
const (
	HostBridgeVendorID  = 0x8086
	HostBridgeDeviceID  = 0x0d57
	HostBridgeClassCode = 0x060000
)

// hostBridge is function 00:00.0: identity only, no BARs, no interrupt.
type hostBridge struct{ cfg *ConfigSpace }

func newHostBridge() (*hostBridge, error) {
	cfg, err := NewConfigSpace(Header{VendorID: HostBridgeVendorID, DeviceID: HostBridgeDeviceID, ClassCode: HostBridgeClassCode})
	if err != nil {
		return nil, fmt.Errorf("pci: host bridge: %w", err)
	}
	return &hostBridge{cfg: cfg}, nil
}

func (b *hostBridge) Config() *ConfigSpace         { return b.cfg }
func (b *hostBridge) BARRead(int, uint64, []byte)  {}
func (b *hostBridge) BARWrite(int, uint64, []byte) {}
