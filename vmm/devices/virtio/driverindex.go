package virtio

import "fmt"

// DriverIndex reads the driver's available index (avail->idx): the number
// of buffers the driver has made available so far, modulo 2^16. Two
// readings that differ tell a device that the driver added buffers in
// between, whether or not the device has taken them (the vsock device
// learns this way that the guest has handled an event: Linux posts the
// event buffer again only after acting on it).
func (q *Queue) DriverIndex() (uint16, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.ready || q.mem == nil {
		return 0, fmt.Errorf("%w: queue %d is not enabled", ErrBadQueue, q.index)
	}
	idx, err := q.read16(q.avail + 2)
	if err != nil {
		return 0, fmt.Errorf("%w: queue %d: driver area index: %w", ErrBadQueue, q.index, err)
	}
	return idx, nil
}
