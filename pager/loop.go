package pager

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager/uffd"
)

// errClientGone ends a session quietly: the registered process has exited
// or unmapped its memory.
var errClientGone = errors.New("pager: client process gone, or its memory unmapped or not registered on the userfaultfd")

// maxEAGAIN bounds retries of a copy that makes no progress because the
// client's mm is changing.
const maxEAGAIN = 1000

// faultLoop serves one registered VM's userfaultfd: Server.Workers
// goroutines read and serve its faults, and the prefetcher (prefetch.go)
// fills the working set beside them. They may fill at once: the kernel
// hands each fault message to one reader, a page copied twice fails the
// second time with EEXIST, and a filled bit is set only once the page is
// present. It never touches the memory it serves.
type faultLoop struct {
	fd      int // the VM's userfaultfd (owned by the session)
	stopFD  int // eventfd, never drained: stop (wakes every worker)
	regions []*region
	fetch   func(ctx context.Context, img chunkstore.Image, frame int32) ([]byte, error)
	c       *counters
	rec     *recorder
	busy    atomic.Int32 // workers between reading messages and finishing them
}

// settle waits (at most limit) until no worker is handling messages it has
// read, so that counters include every fault whose thread has been woken.
func (l *faultLoop) settle(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for l.busy.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
}

// stop wakes every worker for good; they return once ctx is done.
func (l *faultLoop) stop() {
	var one = [8]byte{1}
	unix.Write(l.stopFD, one[:])
}

// run serves until ctx ends (nil), the client goes away (errClientGone) or
// a fault cannot be served (*FaultError).
func (l *faultLoop) run(ctx context.Context) error {
	buf := make([]byte, 64*uffd.MsgSize)
	pfds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(l.stopFD), Events: unix.POLLIN}}
	for {
		if ctx.Err() != nil {
			return nil
		}
		l.busy.Add(1)
		n, err := uffd.Read(l.fd, buf)
		if err != nil {
			l.busy.Add(-1)
			return fmt.Errorf("%w: %v", errClientGone, err)
		}
		if n > 0 {
			now := time.Now()
			for i := 0; i < n; i++ {
				m, _ := uffd.DecodeMsg(buf[i*uffd.MsgSize:])
				if err := l.handle(ctx, m, now); err != nil {
					l.busy.Add(-1)
					return err
				}
			}
			l.busy.Add(-1)
			continue // drain every pending fault before sleeping
		}
		l.busy.Add(-1)
		if _, err := unix.Poll(pfds, -1); err != nil && err != unix.EINTR {
			return fmt.Errorf("pager: poll userfaultfd: %w", err)
		}
		if pfds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0 {
			return fmt.Errorf("%w: userfaultfd poll events %#x", errClientGone, pfds[0].Revents)
		}
	}
}

func (l *faultLoop) find(addr uint64) (*region, int64) {
	for _, r := range l.regions {
		if r.contains(addr) {
			return r, int64((addr - r.HostAddr) / format.PageSize)
		}
	}
	return nil, 0
}

// handle serves one uffd message.
func (l *faultLoop) handle(ctx context.Context, m uffd.Msg, start time.Time) error {
	if m.Event != uffd.EventPagefault {
		// No non-cooperative events are enabled by Register; a stray one
		// is ignored (the kernel does not wait for it).
		return nil
	}
	l.c.faults.Add(1)
	addr := m.Address &^ (format.PageSize - 1)
	r, idx := l.find(addr)
	if r == nil {
		l.c.faultErrors.Add(1)
		return &FaultError{Addr: m.Address, Frame: -1, Page: -1, Reason: "address outside every registered region"}
	}
	if r.isFilled(idx) {
		// Filled since the fault was queued (rest of a frame, prefetch, a
		// signal-interrupted fault repeated), or filled and then dropped by
		// the VMM (MADV_DONTNEED: anonymous memory then reads as zeros).
		// A zero page settles both: EEXIST in the first case, then wake.
		done, err := uffd.ZeroPage(l.fd, r.addr(idx), format.PageSize, 0)
		switch {
		case err == nil && done == format.PageSize:
			l.c.zeroPages.Add(1)
			l.c.refilled.Add(1)
		case err == unix.EEXIST:
			l.c.wakeOnly.Add(1)
			if err := uffd.Wake(l.fd, r.addr(idx), format.PageSize); err != nil {
				return fmt.Errorf("%w: %v", errClientGone, err)
			}
		case err == unix.ESRCH || err == unix.ENOENT:
			return fmt.Errorf("%w: %v", errClientGone, err)
		default:
			return l.faultErr(fmt.Errorf("UFFDIO_ZEROPAGE at %#x: %w", r.addr(idx), err), m.Address, r, r.firstPage+idx, -1)
		}
		l.c.latency.record(time.Since(start))
		return nil
	}
	page := r.firstPage + idx
	e, ok := r.img.Locate(page)
	if !ok {
		n := l.zeroRun(r, idx)
		if err := l.fill(r, idx, n, nil, 0, false); err != nil {
			return l.faultErr(err, m.Address, r, page, -1)
		}
		l.c.latency.record(time.Since(start))
		l.rec.pages(r.Artifact, page, n)
		return nil
	}
	data, err := l.fetch(ctx, r.img, e.Frame)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		l.c.faultErrors.Add(1)
		return &FaultError{Addr: m.Address, Artifact: r.Artifact, Page: page, Frame: e.Frame, Reason: err.Error()}
	}
	off := int(e.Slot+int32(page-e.Page)) * format.PageSize
	if off+format.PageSize > len(data) {
		l.c.faultErrors.Add(1)
		return &FaultError{Addr: m.Address, Artifact: r.Artifact, Page: page, Frame: e.Frame,
			Reason: fmt.Sprintf("frame has %d bytes, slot %d needs %d", len(data), off/format.PageSize, off+format.PageSize)}
	}
	// The faulting page first, waking its thread; then the rest of the
	// frame without wakes (a thread that faulted on one of those meanwhile
	// has a message queued and is woken when it is read).
	if err := l.fill(r, idx, 1, data[off:off+format.PageSize], 0, false); err != nil {
		return l.faultErr(err, m.Address, r, page, e.Frame)
	}
	l.c.latency.record(time.Since(start))
	if l.rec.recording() {
		// Recording: the page alone, so that every page the guest
		// touches faults and the working set lists exactly those (the
		// frame stays in the fetch cache for its neighbours' faults).
		l.rec.pages(r.Artifact, page, 1)
		return nil
	}
	if err := l.fillFrame(r.img, e.Frame, data, page); err != nil {
		return l.faultErr(err, m.Address, r, page, e.Frame)
	}
	l.rec.frame(r.Artifact, e.Frame, r.img.FrameExtents(int(e.Frame)))
	return nil
}

func (l *faultLoop) faultErr(err error, addr uint64, r *region, page int64, frame int32) error {
	if errors.Is(err, errClientGone) {
		return err
	}
	l.c.faultErrors.Add(1)
	return &FaultError{Addr: addr, Artifact: r.Artifact, Page: page, Frame: frame, Reason: err.Error()}
}

// maxZeroRun bounds how many zero pages one zero fault fills ahead.
const maxZeroRun = 64

// zeroRun counts the missing zero pages from idx on (at least 1).
func (l *faultLoop) zeroRun(r *region, idx int64) int64 {
	n := int64(1)
	for n < maxZeroRun && idx+n < r.pages && !r.isFilled(idx+n) {
		if _, ok := r.img.Locate(r.firstPage + idx + n); ok {
			break
		}
		n++
	}
	return n
}

// fillFrame copies the still-missing pages that frame holds for any region
// of img, without waking: the pages packed beside the faulting one (image
// page near), likely touched next. Deduplication can make one slot back
// thousands of pages all over the guest (a common page): those are not
// neighbours, and copying them all would hold this worker for thousands of
// copies of pages the guest may never read. So at most twice the frame's
// slots are copied, the extents nearest near first; the rest fault on
// their own.
func (l *faultLoop) fillFrame(img chunkstore.Image, frame int32, data []byte, near int64) error {
	exts := img.FrameExtents(int(frame))
	budget := 2 * max(int64(len(data)/format.PageSize), 1)
	if total := extentPages(exts); total > budget {
		exts = slices.Clone(exts)
		slices.SortStableFunc(exts, func(a, b format.Extent) int {
			return cmp.Compare(extentDistance(a, near), extentDistance(b, near))
		})
	}
	for _, fe := range exts {
		if budget <= 0 {
			break
		}
		count := min(int64(fe.Count), budget)
		budget -= count
		for _, r := range l.regions {
			if r.img != img {
				continue
			}
			idx, n := r.clip(fe.Page, count)
			if n == 0 {
				continue
			}
			off := (int64(fe.Slot) + r.firstPage + idx - fe.Page) * format.PageSize
			end := off + n*format.PageSize
			if fe.Frame != frame || off < 0 || end > int64(len(data)) {
				return fmt.Errorf("%s extent (page %d, count %d, frame %d, slot %d) does not fit frame %d of %d bytes",
					r.Artifact, fe.Page, fe.Count, fe.Frame, fe.Slot, frame, len(data))
			}
			if err := l.fill(r, idx, n, data[off:end], uffd.CopyModeDontWake, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// extentPages is the number of pages exts map.
func extentPages(exts []format.Extent) int64 {
	var n int64
	for _, e := range exts {
		n += int64(e.Count)
	}
	return n
}

// extentDistance is how many pages lie between page and extent e (0 when
// e holds it).
func extentDistance(e format.Extent, page int64) int64 {
	switch {
	case page < e.Page:
		return e.Page - page
	case page >= e.End():
		return page - e.End() + 1
	}
	return 0
}

// fill fills the missing pages among n pages of r from idx: copies from src
// (n pages), or zero pages when src is nil. Pages found present are marked
// filled (and woken unless mode says DontWake).
func (l *faultLoop) fill(r *region, idx, n int64, src []byte, mode uint64, prefetch bool) error {
	const ps = format.PageSize
	wake := mode&uffd.CopyModeDontWake == 0
	for n > 0 {
		if r.isFilled(idx) {
			if wake {
				if err := uffd.Wake(l.fd, r.addr(idx), ps); err != nil {
					return fmt.Errorf("%w: %v", errClientGone, err)
				}
			}
			idx, n = idx+1, n-1
			if src != nil {
				src = src[ps:]
			}
			continue
		}
		k := int64(1)
		for k < n && !r.isFilled(idx+k) {
			k++
		}
		var done int64
		var err error
		for try := 0; ; try++ {
			if src != nil {
				done, err = uffd.Copy(l.fd, r.addr(idx), unsafe.Pointer(&src[0]), uint64(k*ps), mode)
			} else {
				done, err = uffd.ZeroPage(l.fd, r.addr(idx), uint64(k*ps), mode)
			}
			if err == unix.EAGAIN && done == 0 && try < maxEAGAIN {
				time.Sleep(10 * time.Microsecond)
				continue
			}
			break
		}
		if pages := done / ps; pages > 0 {
			l.c.copies.Add(1)
			r.setFilled(idx, pages)
			if src != nil {
				l.c.pagesCopied.Add(pages)
				src = src[pages*ps:]
			} else {
				l.c.zeroPages.Add(pages)
			}
			if prefetch {
				l.c.prefetched.Add(pages)
			}
			idx, n = idx+pages, n-pages
		}
		switch {
		case err == nil:
		case err == unix.EAGAIN && done > 0:
		case err == unix.EEXIST:
			// Present without us (touched before registration, or
			// populated by the VMM): nothing to copy.
			l.c.alreadyPresent.Add(1)
			r.setFilled(idx, 1)
		case err == unix.ESRCH || err == unix.ENOENT:
			return fmt.Errorf("%w: %v", errClientGone, err)
		default:
			op := "UFFDIO_COPY"
			if src == nil {
				op = "UFFDIO_ZEROPAGE"
			}
			return fmt.Errorf("%s of %d pages at %#x: %w", op, k, r.addr(idx), err)
		}
	}
	return nil
}
