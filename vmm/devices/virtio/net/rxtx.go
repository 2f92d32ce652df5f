package net

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

func (d *Device) getFrame(n int) []byte { return (*d.pool.Get().(*[]byte))[:n] }

func (d *Device) putFrame(f []byte) {
	f = f[:cap(f)]
	d.pool.Put(&f)
}

// readLoop takes frames from the backend until it fails (closed), handing
// them to the receive worker of the active driver. With no active driver a
// frame is dropped; with no room in the backlog the loop waits, so the
// backend's own buffer absorbs a guest that posts no receive buffers.
func (d *Device) readLoop() {
	scratch := make([]byte, max(64<<10, d.maxFrame+1))
	for {
		n, err := d.backend.ReadFrame(scratch)
		if err != nil {
			d.readErr <- err
			return
		}
		if n < MinFrame || n > d.maxFrame {
			d.stats.rxDropped.Add(1)
			continue
		}
		d.mu.Lock()
		active := d.rx != nil
		d.mu.Unlock()
		if !active {
			d.stats.rxDropped.Add(1)
			continue
		}
		f := d.getFrame(n)
		copy(f, scratch[:n])
		select {
		case d.frames <- f:
		case <-d.closed:
			d.readErr <- nil
			return
		}
		d.mu.Lock()
		if d.rx != nil {
			d.rx.Kick()
		}
		d.mu.Unlock()
	}
}

// rxPass moves waiting frames into the driver's receive buffers: each frame
// goes, after a zeroed header with num_buffers 1, into one chain. It stops
// when no frame waits or no buffer is posted (the driver's notify or the
// reader's next frame kicks it again).
func (d *Device) rxPass(a *virtio.Activation) (bool, error) {
	q := a.Queues[RxQueue]
	if q == nil {
		return false, nil
	}
	var hdr [HeaderLen]byte
	binary.LittleEndian.PutUint16(hdr[10:], 1)
	moved := 0
	for ; moved < passBudget; moved++ {
		if d.held == nil {
			select {
			case d.held = <-d.frames:
			default:
			}
			if d.held == nil {
				break
			}
		}
		c, err := q.Pop()
		if err != nil {
			return false, fmt.Errorf("virtio-net: receive queue: %w", err)
		}
		if c == nil {
			break
		}
		f := d.held
		d.held = nil
		written := 0
		if c.WriteLen < uint64(HeaderLen+len(f)) {
			// A buffer too small for the frame: the driver gets it back
			// empty and the frame is lost (never truncated).
			d.stats.rxDropped.Add(1)
		} else {
			w := c.Writer(a.Mem)
			if _, err := w.Write(hdr[:]); err != nil {
				return false, fmt.Errorf("virtio-net: receive chain %d: %w", c.Head, err)
			}
			if _, err := w.Write(f); err != nil {
				return false, fmt.Errorf("virtio-net: receive chain %d: %w", c.Head, err)
			}
			written = HeaderLen + len(f)
			d.stats.rxFrames.Add(1)
			d.stats.rxBytes.Add(uint64(len(f)))
		}
		d.putFrame(f)
		if err := q.Push(c.Head, uint32(written)); err != nil {
			return false, fmt.Errorf("virtio-net: receive queue: %w", err)
		}
	}
	if err := q.Notify(); err != nil {
		return false, fmt.Errorf("virtio-net: receive queue: %w", err)
	}
	return moved == passBudget, nil
}

// txPass sends the frames the driver made available. A chain that is not a
// header plus an Ethernet frame, or that the backend refuses, is dropped and
// counted; it still goes back to the driver. An unreachable guest address
// is a device error.
func (d *Device) txPass(a *virtio.Activation) (bool, error) {
	q := a.Queues[TxQueue]
	if q == nil {
		return false, nil
	}
	sent := 0
	for ; sent < passBudget; sent++ {
		c, err := q.Pop()
		if err != nil {
			return false, fmt.Errorf("virtio-net: transmit queue: %w", err)
		}
		if c == nil {
			break
		}
		if n := c.ReadLen; n < HeaderLen+MinFrame || n > uint64(HeaderLen+d.maxFrame) {
			d.stats.txDropped.Add(1)
		} else {
			buf := d.txBuf[:n]
			if _, err := io.ReadFull(c.Reader(a.Mem), buf); err != nil {
				return false, fmt.Errorf("virtio-net: transmit chain %d: %w", c.Head, err)
			}
			if err := d.backend.WriteFrame(buf[HeaderLen:]); err != nil {
				d.stats.txDropped.Add(1)
			} else {
				d.stats.txFrames.Add(1)
				d.stats.txBytes.Add(n - HeaderLen)
			}
		}
		if err := q.Push(c.Head, 0); err != nil {
			return false, fmt.Errorf("virtio-net: transmit queue: %w", err)
		}
	}
	if err := q.Notify(); err != nil {
		return false, fmt.Errorf("virtio-net: transmit queue: %w", err)
	}
	return sent == passBudget, nil
}
