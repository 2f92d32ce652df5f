package blk

import (
	"encoding/binary"
	"fmt"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
)

// pass serves up to a queue's worth of requests.
func (d *Device) pass(mem virtio.Memory, q *virtio.Queue) (bool, error) {
	for range q.Size() {
		c, err := q.Pop()
		if err != nil {
			return false, err
		}
		if c == nil {
			return false, q.Notify()
		}
		n, err := d.serve(mem, c)
		if err != nil {
			return false, err
		}
		if err := q.Push(c.Head, n); err != nil {
			return false, err
		}
	}
	return true, q.Notify()
}

// serve handles one request and returns the bytes written into the chain.
// Only a chain with no room for a status byte, or guest memory the device
// cannot reach, is an error.
func (d *Device) serve(mem virtio.Memory, c *virtio.Chain) (uint32, error) {
	if c.WriteLen < 1 {
		return 0, fmt.Errorf("%w: blk request (head %d) has no writable status byte", virtio.ErrBadChain, c.Head)
	}
	status := d.findStatus(c)
	r := c.Reader(mem)
	var hdr [headerLen]byte
	if c.ReadLen < headerLen {
		return d.finish(mem, status, StatusIOErr, 0)
	}
	if _, err := r.Read(hdr[:]); err != nil {
		return 0, fmt.Errorf("blk: header of head %d: %w", c.Head, err)
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	dataLen := c.WriteLen - 1 // writable bytes before the status byte
	switch typ {
	case TypeIn:
		n, st, err := d.read(mem, c, sector, dataLen)
		if err != nil {
			return 0, err
		}
		return d.finish(mem, status, st, n)
	case TypeOut:
		st, err := d.write(mem, c, sector, c.ReadLen-headerLen)
		if err != nil {
			return 0, err
		}
		return d.finish(mem, status, st, 0)
	case TypeFlush:
		d.count(func(s *Stats) { s.Flushes++ })
		if err := d.disk.Flush(); err != nil {
			return d.finish(mem, status, StatusIOErr, 0)
		}
		return d.finish(mem, status, StatusOK, 0)
	case TypeGetID:
		id := make([]byte, min(uint64(IDLen), dataLen))
		copy(id, d.id)
		w := c.Writer(mem)
		if _, err := w.Write(id); err != nil {
			return 0, fmt.Errorf("blk: GET_ID of head %d: %w", c.Head, err)
		}
		return d.finish(mem, status, StatusOK, uint32(len(id)))
	}
	return d.finish(mem, status, StatusUnsupp, 0)
}

// findStatus is the guest address of the last writable byte.
func (d *Device) findStatus(c *virtio.Chain) uint64 {
	last := c.Segments[len(c.Segments)-1]
	return last.Addr + uint64(last.Len) - 1
}

func (d *Device) finish(mem virtio.Memory, addr uint64, st byte, n uint32) (uint32, error) {
	if st != StatusOK {
		d.count(func(s *Stats) { s.Errors++ })
	}
	if err := mem.Write(addr, []byte{st}); err != nil {
		return 0, fmt.Errorf("blk: status byte: %w", err)
	}
	return n + 1, nil
}

func (d *Device) count(f func(*Stats)) {
	d.mu.Lock()
	f(&d.stats)
	d.mu.Unlock()
}

// inRange checks a transfer of n bytes at sector.
func (d *Device) inRange(sector, n uint64) bool {
	return n%SectorSize == 0 && sector <= d.capacity && n/SectorSize <= d.capacity-sector
}

// read fills the data buffers (the writable bytes before the status byte)
// from the disk: straight into guest memory when it can be sliced.
func (d *Device) read(mem virtio.Memory, c *virtio.Chain, sector, n uint64) (uint32, byte, error) {
	if !d.inRange(sector, n) {
		return 0, StatusIOErr, nil
	}
	spans, err := c.Spans(true, 0, n)
	if err != nil {
		return 0, 0, err
	}
	off := int64(sector * SectorSize)
	dm, direct := mem.(virtio.DirectMemory)
	for _, s := range spans {
		for done := uint64(0); done < uint64(s.Len); {
			m := min(uint64(s.Len)-done, uint64(len(d.buf)))
			buf := d.buf[:m]
			if direct {
				if buf, err = dm.Slice(s.Addr+done, int(m)); err != nil {
					return 0, 0, fmt.Errorf("blk: read into head %d: %w", c.Head, err)
				}
			}
			if _, err := d.disk.ReadAt(buf, off); err != nil {
				return 0, StatusIOErr, nil
			}
			if !direct {
				if err := mem.Write(s.Addr+done, buf); err != nil {
					return 0, 0, fmt.Errorf("blk: read into head %d: %w", c.Head, err)
				}
			}
			done += m
			off += int64(m)
		}
	}
	d.count(func(s *Stats) { s.Reads++; s.BytesRead += n })
	return uint32(n), StatusOK, nil
}

// write copies the data buffers (the readable bytes after the header) to the
// disk: straight from guest memory when it can be sliced.
func (d *Device) write(mem virtio.Memory, c *virtio.Chain, sector, n uint64) (byte, error) {
	if d.disk.ReadOnly() || !d.inRange(sector, n) {
		return StatusIOErr, nil
	}
	spans, err := c.Spans(false, headerLen, n)
	if err != nil {
		return 0, err
	}
	off := int64(sector * SectorSize)
	dm, direct := mem.(virtio.DirectMemory)
	for _, s := range spans {
		for done := uint64(0); done < uint64(s.Len); {
			m := min(uint64(s.Len)-done, uint64(len(d.buf)))
			buf := d.buf[:m]
			if direct {
				buf, err = dm.Slice(s.Addr+done, int(m))
			} else {
				err = mem.Read(s.Addr+done, buf)
			}
			if err != nil {
				return 0, fmt.Errorf("blk: write data of head %d: %w", c.Head, err)
			}
			if _, err := d.disk.WriteAt(buf, off); err != nil {
				return StatusIOErr, nil
			}
			done += m
			off += int64(m)
		}
	}
	d.count(func(s *Stats) { s.Writes++; s.BytesWritten += n })
	return StatusOK, nil
}
