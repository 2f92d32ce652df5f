package virtio

// Device types (virtio 1.x, section 5).
const (
	TypeBlock   uint16 = 2
	TypeConsole uint16 = 3
	TypeRNG     uint16 = 4
	TypeVsock   uint16 = 19
)

// Feature bits the transport handles itself (virtio 1.x, section 6).
const (
	FeatureIndirectDesc = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1     = 1 << 32 // VIRTIO_F_VERSION_1
	transportFeatures   = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1
)

// Device status bits (virtio 1.x, section 2.1).
const (
	StatusAcknowledge      = 1
	StatusDriver           = 2
	StatusDriverOK         = 4
	StatusFeaturesOK       = 8
	StatusDeviceNeedsReset = 0x40
	StatusFailed           = 0x80
)

// NoVector is the MSI-X vector number that means "no interrupt".
const NoVector = 0xffff

// Device is one virtio device model behind a Transport.
//
// The transport calls Activate when the driver sets DRIVER_OK, QueueNotify
// when the driver notifies a queue (on the vCPU thread: it must not block;
// usually it kicks a Worker), and Reset when the driver resets the device or
// the transport is closed: Reset stops the device's goroutines, waiting for
// them, and forgets everything negotiated. ReadConfig and WriteConfig access
// the device-specific configuration structure at an offset inside it; reads
// past its end give zeros.
type Device interface {
	// Type is the virtio device ID (TypeBlock...).
	Type() uint16
	// Features are the device-specific feature bits offered (the transport
	// adds VERSION_1, INDIRECT_DESC and EVENT_IDX).
	Features() uint64
	// QueueSizes gives the maximum size of each queue; its length is the
	// number of queues.
	QueueSizes() []uint16
	ReadConfig(offset uint64, data []byte)
	WriteConfig(offset uint64, data []byte)
	Activate(a *Activation) error
	QueueNotify(queue int)
	Reset()
}

// Pauser is implemented by devices with goroutines of their own, so that a
// snapshot sees no request half done. Pause returns once every chain the
// device took from a queue is back in the used ring and no more will be taken
// until Resume.
type Pauser interface {
	Pause()
	Resume()
}

// Activation is what a device gets when the driver sets DRIVER_OK.
type Activation struct {
	Mem Memory
	// Features is the negotiated set (device and transport bits).
	Features uint64
	// Queues has one entry per queue the device declared; nil where the
	// driver did not enable that queue.
	Queues []*Queue
	// Fail reports a device error (a malformed chain, an unreachable
	// address): the transport sets DEVICE_NEEDS_RESET and tells the driver.
	// The device should stop using its queues until Reset.
	Fail func(error)
}

// Has reports whether feature bit(s) f were negotiated.
func (a *Activation) Has(f uint64) bool { return a.Features&f == f }
