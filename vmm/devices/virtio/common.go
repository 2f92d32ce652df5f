package virtio

import (
	"encoding/binary"
	"fmt"
)

// Offsets in struct virtio_pci_common_cfg (virtio 1.x, section 4.1.4.3).
const (
	ccDeviceFeatureSel = 0x00
	ccDeviceFeature    = 0x04
	ccDriverFeatureSel = 0x08
	ccDriverFeature    = 0x0c
	ccMSIXConfig       = 0x10
	ccNumQueues        = 0x12
	ccDeviceStatus     = 0x14
	ccConfigGeneration = 0x15
	ccQueueSelect      = 0x16
	ccQueueSize        = 0x18
	ccQueueMSIXVector  = 0x1a
	ccQueueEnable      = 0x1c
	ccQueueNotifyOff   = 0x1e
	ccQueueDesc        = 0x20
	ccQueueDriver      = 0x28
	ccQueueDevice      = 0x30
)

// commonImage renders the common configuration structure as the driver
// reads it. Callers hold t.mu.
func (t *Transport) commonImage() [commonLen]byte {
	var b [commonLen]byte
	le := binary.LittleEndian
	le.PutUint32(b[ccDeviceFeatureSel:], t.devFeatureSel)
	if t.devFeatureSel < 2 {
		le.PutUint32(b[ccDeviceFeature:], uint32(t.offered>>(32*t.devFeatureSel)))
	}
	le.PutUint32(b[ccDriverFeatureSel:], t.drvFeatureSel)
	if t.drvFeatureSel < 2 {
		le.PutUint32(b[ccDriverFeature:], uint32(t.driverFeatures>>(32*t.drvFeatureSel)))
	}
	t.irqMu.Lock()
	le.PutUint16(b[ccMSIXConfig:], t.msix.vectorOrNone(t.msixConfig))
	t.irqMu.Unlock()
	le.PutUint16(b[ccNumQueues:], uint16(len(t.queues)))
	b[ccDeviceStatus] = t.Status()
	b[ccConfigGeneration] = uint8(t.configGen.Load())
	le.PutUint16(b[ccQueueSelect:], t.queueSel)
	if q := t.selected(); q != nil {
		q.mu.Lock()
		le.PutUint16(b[ccQueueSize:], q.size)
		le.PutUint16(b[ccQueueMSIXVector:], t.msix.vectorOrNone(q.msixVector))
		if q.ready {
			le.PutUint16(b[ccQueueEnable:], 1)
		}
		le.PutUint16(b[ccQueueNotifyOff:], uint16(q.index))
		le.PutUint64(b[ccQueueDesc:], q.desc)
		le.PutUint64(b[ccQueueDriver:], q.avail)
		le.PutUint64(b[ccQueueDevice:], q.used)
		q.mu.Unlock()
	}
	return b
}

// selected is the queue queue_select names, or nil.
func (t *Transport) selected() *Queue {
	if int(t.queueSel) < len(t.queues) {
		return t.queues[t.queueSel]
	}
	return nil
}

func (t *Transport) commonRead(off uint64, data []byte) {
	t.mu.Lock()
	img := t.commonImage()
	t.mu.Unlock()
	copy(data, img[off:])
}

// commonWrite merges the write into the current image and applies every
// field it touched, so 64-bit fields written as two halves work.
func (t *Transport) commonWrite(off uint64, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	img := t.commonImage()
	n := copy(img[off:], data)
	end := off + uint64(n)
	touched := func(field, size uint64) bool { return off < field+size && end > field }
	le := binary.LittleEndian
	if touched(ccDeviceFeatureSel, 4) {
		t.devFeatureSel = le.Uint32(img[ccDeviceFeatureSel:])
	}
	if touched(ccDriverFeatureSel, 4) {
		t.drvFeatureSel = le.Uint32(img[ccDriverFeatureSel:])
	}
	if touched(ccDriverFeature, 4) && t.drvFeatureSel < 2 && t.Status()&StatusFeaturesOK == 0 {
		shift := 32 * t.drvFeatureSel
		t.driverFeatures = t.driverFeatures&^(0xffffffff<<shift) | uint64(le.Uint32(img[ccDriverFeature:]))<<shift
	}
	if touched(ccMSIXConfig, 2) {
		t.irqMu.Lock()
		t.msixConfig = le.Uint16(img[ccMSIXConfig:])
		t.irqMu.Unlock()
	}
	if touched(ccQueueSelect, 2) {
		t.queueSel = le.Uint16(img[ccQueueSelect:])
	}
	if q := t.selected(); q != nil && !t.active {
		q.mu.Lock()
		if touched(ccQueueSize, 2) {
			q.size = le.Uint16(img[ccQueueSize:])
		}
		if touched(ccQueueMSIXVector, 2) {
			q.msixVector = le.Uint16(img[ccQueueMSIXVector:])
		}
		if touched(ccQueueEnable, 2) && le.Uint16(img[ccQueueEnable:]) == 1 {
			q.ready = true
		}
		if touched(ccQueueDesc, 8) {
			q.desc = le.Uint64(img[ccQueueDesc:])
		}
		if touched(ccQueueDriver, 8) {
			q.avail = le.Uint64(img[ccQueueDriver:])
		}
		if touched(ccQueueDevice, 8) {
			q.used = le.Uint64(img[ccQueueDevice:])
		}
		q.mu.Unlock()
	}
	if touched(ccDeviceStatus, 1) {
		t.writeStatus(img[ccDeviceStatus])
	}
}

// writeStatus applies a driver write of device_status. Callers hold t.mu.
func (t *Transport) writeStatus(v uint8) {
	if v == 0 {
		t.resetLocked()
		return
	}
	old := t.Status()
	v |= old & (StatusDeviceNeedsReset | StatusFeaturesOK) // the driver cannot clear these but by reset
	if v&StatusFeaturesOK != 0 && old&StatusFeaturesOK == 0 {
		if t.driverFeatures&^t.offered != 0 || t.driverFeatures&FeatureVersion1 == 0 {
			v &^= StatusFeaturesOK // refuse: the driver reads it back and gives up
		}
	}
	t.status.Store(uint32(v))
	if v&StatusDriverOK != 0 && old&StatusDriverOK == 0 && v&StatusFeaturesOK != 0 && !t.active {
		if err := t.activateLocked(); err != nil {
			t.fail(err)
		}
	}
}

// activateLocked starts the device on the enabled queues. Callers hold t.mu.
func (t *Transport) activateLocked() error {
	a := &Activation{Mem: t.mem, Features: t.driverFeatures, Queues: make([]*Queue, len(t.queues)), Fail: t.fail}
	for i, q := range t.queues {
		q.mu.Lock()
		if q.ready {
			if err := q.check(); err != nil {
				q.mu.Unlock()
				return err
			}
			q.start(t.mem, t.driverFeatures, func() { t.signal(q.vector(), isrQueue) })
			a.Queues[i] = q
		}
		q.mu.Unlock()
	}
	if err := t.dev.Activate(a); err != nil {
		return fmt.Errorf("virtio: activate device type %d: %w", t.dev.Type(), err)
	}
	t.active = true
	t.paused = false
	return nil
}

func (q *Queue) vector() uint16 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.msixVector
}

// resetLocked is a device reset: the device stops, queues and negotiation
// are forgotten, pending interrupts are withdrawn. The MSI-X table, part of
// the PCI function, stays. Callers hold t.mu.
func (t *Transport) resetLocked() {
	if t.active {
		t.dev.Reset()
		t.active = false
	}
	t.paused, t.pausing = false, nil
	for _, q := range t.queues {
		q.reset()
	}
	t.devFeatureSel, t.drvFeatureSel, t.driverFeatures, t.queueSel = 0, 0, 0, 0
	t.status.Store(0)
	t.irqMu.Lock()
	t.isr = 0
	t.msixConfig = NoVector
	t.setINTxLocked(false)
	t.irqMu.Unlock()
}

// fail marks a device error: DEVICE_NEEDS_RESET and a configuration change
// interrupt. Any goroutine may call it.
func (t *Transport) fail(err error) {
	for {
		old := t.status.Load()
		if t.status.CompareAndSwap(old, old|StatusDeviceNeedsReset) {
			break
		}
	}
	t.irqMu.Lock()
	t.lastErr = err
	v := t.msixConfig
	t.irqMu.Unlock()
	t.signal(v, isrConfig)
}

// ConfigChanged tells the driver the device configuration changed (a
// resized disk): config_generation moves and a configuration interrupt goes.
func (t *Transport) ConfigChanged() {
	t.configGen.Add(1)
	t.irqMu.Lock()
	v := t.msixConfig
	t.irqMu.Unlock()
	t.signal(v, isrConfig)
}
