package vmm

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/kvm"
)

// notifyWidth is the access width Linux's virtio_pci_modern notifies with
// (a 16-bit write of the queue index). Writes of other widths still reach the
// transport through an MMIO exit.
const notifyWidth = 2

// notifier turns a device's queue notifications into eventfd signals with
// KVM_IOEVENTFD, so a notify costs the vCPU no exit to userspace; one
// goroutine per queue waits on its eventfd and calls Transport.Notify. It
// follows the BAR wherever the guest maps it.
type notifier struct {
	vm    *kvm.VM
	trans *virtio.Transport
	files []*os.File // one eventfd per queue
	wg    sync.WaitGroup

	mu       sync.Mutex
	base     uint64 // where the ioeventfds are registered; 0: nowhere
	lastErr  error
	closed   bool
	notifies []uint64 // per queue, for tests and diagnostics
}

func newNotifier(vm *kvm.VM, t *virtio.Transport) (*notifier, error) {
	n := &notifier{vm: vm, trans: t}
	nq := len(t.Device().QueueSizes())
	n.notifies = make([]uint64, nq)
	for q := range nq {
		fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			n.close()
			return nil, fmt.Errorf("vmm: eventfd for queue %d: %w", q, err)
		}
		// Non-blocking: the runtime's poller serves Read and Close wakes it.
		n.files = append(n.files, os.NewFile(uintptr(fd), fmt.Sprintf("virtio-notify-%d", q)))
	}
	for q, f := range n.files {
		n.wg.Add(1)
		go n.wait(q, f)
	}
	return n, nil
}

// wait relays queue q's eventfd until the file is closed.
func (n *notifier) wait(q int, f *os.File) {
	defer n.wg.Done()
	var b [8]byte
	for {
		if _, err := f.Read(b[:]); err != nil {
			return
		}
		n.mu.Lock()
		n.notifies[q]++
		n.mu.Unlock()
		n.trans.Notify(q)
	}
}

// mapped is the transport's BAR callback: (de)register the ioeventfds. A
// failure leaves notifications on the MMIO exit path, which still works.
func (n *notifier) mapped(base uint64, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if n.base != 0 {
		n.setLocked(n.base, true)
		n.base = 0
	}
	if on {
		if err := n.setLocked(base, false); err != nil {
			n.lastErr = err
			n.setLocked(base, true)
			return
		}
		n.base = base
	}
}

func (n *notifier) setLocked(base uint64, deassign bool) error {
	var errs []error
	for q, f := range n.files {
		e := kvm.IOEventFD{FD: int(f.Fd()), Addr: virtio.NotifyAddress(base, q), Len: notifyWidth}
		if err := n.vm.SetIOEventFD(e, deassign); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// counts returns the notifications relayed per queue.
func (n *notifier) counts() []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]uint64(nil), n.notifies...)
}

// close removes the ioeventfds, closes the eventfds and waits for the
// goroutines (Close wakes their reads at once).
func (n *notifier) close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	var err error
	if n.base != 0 {
		err = n.setLocked(n.base, true)
		n.base = 0
	}
	n.mu.Unlock()
	for _, f := range n.files {
		err = errors.Join(err, f.Close())
	}
	n.wg.Wait()
	return err
}
