package pager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/pager/uffd"
)

// session is one client connection: at most one registered VM.
type session struct {
	srv  *Server
	conn *net.UnixConn
	wmu  sync.Mutex

	hello bool
	c     counters
	rec   *recorder

	// set by register
	uffdFD, stopFD int
	loop           *faultLoop
	cancelLoop     context.CancelFunc
	loopCtx        context.Context // ends with the loop
	loopErr        atomic.Value    // string: why the loop ended, if it failed
	loopWG         sync.WaitGroup
}

// ServeConn serves one client until it sends close, disconnects, or ctx
// ends. It closes conn, and the userfaultfd it was given, before returning.
func (s *Server) ServeConn(ctx context.Context, conn *net.UnixConn) error {
	if s.Open == nil {
		conn.Close()
		return errors.New("pager: Server.Open is nil")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ss := &session{srv: s, conn: conn, rec: newRecorder(false), uffdFD: -1, stopFD: -1}
	defer conn.Close()
	defer ss.stopLoop()
	rd := newReader(conn)
	defer rd.closeFDs()
	for {
		m, err := rd.read()
		if err == io.EOF {
			return nil
		}
		var pe *payloadError
		if errors.As(err, &pe) {
			// A bad payload of a well-framed message: answer, go on.
			if werr := ss.write(&message{Type: msgError, Error: err.Error()}); werr != nil {
				return werr
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrProtocol) {
				ss.write(&message{Type: msgError, Error: err.Error()})
			}
			return fmt.Errorf("pager: read from client: %w", err)
		}
		if m.Type == msgWaitPrefetch && ss.hello {
			rd.closeFDs()
			ss.waitPrefetch(m)
			continue
		}
		reply := ss.handle(ctx, m, rd)
		rd.closeFDs() // an fd that came with anything but a register
		reply.ID = m.ID
		if err := ss.write(reply); err != nil {
			return err
		}
		if m.Type == msgClose || (m.Type == msgHello && reply.Type == msgError) {
			return nil
		}
	}
}

// writeTimeout bounds sending one message to a peer that does not read.
const writeTimeout = 5 * time.Second

func (ss *session) write(m *message) error {
	ss.wmu.Lock()
	defer ss.wmu.Unlock()
	ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return writeMessage(ss.conn, m, -1)
}

func errReply(format string, args ...any) *message {
	return &message{Type: msgError, Error: fmt.Sprintf(format, args...)}
}

func (ss *session) handle(ctx context.Context, m *message, rd *reader) *message {
	if !ss.hello && m.Type != msgHello {
		return errReply("pager: first message must be hello, got %q", m.Type)
	}
	switch m.Type {
	case msgHello:
		if m.Version != ProtocolVersion {
			return errReply("pager: protocol version %d not supported (this daemon speaks %d)", m.Version, ProtocolVersion)
		}
		ss.hello = true
		return &message{Type: msgHello, Version: ProtocolVersion}
	case msgRegister:
		fd := rd.takeFD()
		if err := ss.register(ctx, m, fd); err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			return errReply("%v", err)
		}
		return &message{Type: msgOK}
	case msgReady:
		return &message{Type: msgOK, WorkingSet: ss.rec.stop()}
	case msgStats:
		if ss.loop != nil {
			ss.loop.settle(50 * time.Millisecond)
		}
		st := ss.c.snapshot()
		return &message{Type: msgOK, Stats: &st}
	case msgClose:
		return &message{Type: msgOK}
	}
	return errReply("pager: unknown message type %q", m.Type)
}

// maxPrefetchWait bounds one wait_prefetch request.
const maxPrefetchWait = 5 * time.Minute

// waitPrefetch answers m (wait_prefetch) once the registered VM's prefetch
// list has been worked through, or m.WaitMs (at most maxPrefetchWait) has
// passed, with the stats then (their PrefetchDone says which; Error says
// why when the VM's fault loop failed first). It answers
// from a goroutine of its own, so the session serves other requests (the
// VMM's heartbeat) meanwhile. Without a registered VM it answers an error.
func (ss *session) waitPrefetch(m *message) {
	if ss.loop == nil || ss.c.prefetchDoneCh == nil {
		r := errReply("pager: wait_prefetch: no VM registered on this connection")
		r.ID = m.ID
		ss.write(r)
		return
	}
	wait := min(time.Duration(max(m.WaitMs, 0))*time.Millisecond, maxPrefetchWait)
	done, lctx := ss.c.prefetchDoneCh, ss.loopCtx
	ss.loopWG.Add(1)
	go func() {
		defer ss.loopWG.Done()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
		case <-lctx.Done(): // the loop ended (failed or closing)
		}
		st := ss.c.snapshot()
		r := &message{Type: msgOK, ID: m.ID, Stats: &st}
		if why, _ := ss.loopErr.Load().(string); why != "" && !st.PrefetchDone {
			r.Error = why
		}
		ss.write(r)
	}()
}

func (ss *session) register(ctx context.Context, m *message, fd int) error {
	if ss.loop != nil {
		return errors.New("pager: register: this connection already has a VM registered")
	}
	if fd < 0 {
		return errors.New("pager: register: no userfaultfd attached (SCM_RIGHTS)")
	}
	if len(m.Regions) == 0 {
		return errors.New("pager: register: no regions")
	}
	if m.Prefetch != nil {
		if err := m.Prefetch.Validate(); err != nil {
			return fmt.Errorf("pager: register: prefetch list: %w", err)
		}
	}
	images := map[string]chunkstore.Image{}
	var regions []*region
	for i, r := range m.Regions {
		img, ok := images[r.Artifact]
		if !ok {
			var err error
			if img, err = ss.srv.Open(r.Artifact); err != nil {
				return fmt.Errorf("pager: register: region %d: artifact %q: %w", i, r.Artifact, err)
			}
			images[r.Artifact] = img
		}
		reg, err := newRegion(r, img)
		if err != nil {
			return fmt.Errorf("pager: register: region %d: %w", i, err)
		}
		for j, o := range regions {
			if overlaps(reg, o) {
				return fmt.Errorf("pager: register: region %d overlaps region %d", i, j)
			}
		}
		regions = append(regions, reg)
	}
	// A wake on a registered range is harmless and proves fd is a
	// userfaultfd for an address space that has this range.
	if err := uffd.Wake(fd, uintptr(regions[0].HostAddr), format.PageSize); err != nil {
		return fmt.Errorf("pager: register: attached fd is not a usable userfaultfd: %w", err)
	}
	// The loop reads until EAGAIN and waits in poll: the fd must not block
	// (the flag is on the file description the VMM shares; it never reads).
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("pager: register: userfaultfd: %w", err)
	}
	sfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("pager: register: eventfd: %w", err)
	}
	ss.uffdFD, ss.stopFD = fd, sfd
	ss.rec = newRecorder(m.Record)
	ss.c.registered = time.Now()
	ss.c.prefetchDoneCh = make(chan struct{})
	l := &faultLoop{fd: fd, stopFD: sfd, regions: regions, c: &ss.c, rec: ss.rec}
	lctx, cancel := context.WithCancel(ctx)
	l.fetch = func(ctx context.Context, img chunkstore.Image, frame int32) ([]byte, error) {
		return ss.srv.fetch(ctx, &ss.c, img, frame)
	}
	ss.loop, ss.cancelLoop, ss.loopCtx = l, cancel, lctx
	var once sync.Once
	report := func(err error) {
		once.Do(func() {
			ss.loopErr.Store(err.Error())
			var fe *FaultError
			switch {
			case errors.As(err, &fe):
				ss.srv.logf("%v", fe)
				ss.write(&message{Type: msgFaultError, Error: fe.Error(), Fault: fe})
			case errors.Is(err, errClientGone):
				// Usually the VMM exited (then this write fails harmlessly);
				// if not (a region missing from its uffd), it must hear it.
				ss.srv.logf("pager: client gone: %v", err)
				ss.write(&message{Type: msgFaultError, Error: err.Error(), Fault: &FaultError{Frame: -1, Page: -1, Reason: err.Error()}})
			default:
				ss.srv.logf("pager: fault loop: %v", err)
				ss.write(&message{Type: msgFaultError, Error: err.Error(), Fault: &FaultError{Frame: -1, Page: -1, Reason: err.Error()}})
			}
		})
	}
	for range max(ss.srv.Workers, 1) {
		ss.loopWG.Add(1)
		go func() {
			defer ss.loopWG.Done()
			if err := l.run(lctx); err != nil {
				report(err)
			}
			cancel() // stops the prefetcher and the other workers
			l.stop()
		}()
	}
	if m.Prefetch != nil {
		ss.loopWG.Add(1)
		go func() {
			defer ss.loopWG.Done()
			if err := l.runPrefetch(lctx, m.Prefetch, ss.srv.logf); err != nil {
				report(err)
				cancel() // stops the workers
				l.stop()
			}
		}()
	} else {
		ss.c.markPrefetchDone()
	}
	return nil
}

// stopLoop ends the fault loop and prefetcher and closes their fds.
func (ss *session) stopLoop() {
	if ss.loop == nil {
		return
	}
	ss.cancelLoop()
	ss.loop.stop()
	ss.loopWG.Wait()
	unix.Close(ss.uffdFD)
	unix.Close(ss.stopFD)
	ss.loop = nil
}
