package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/pager"
	"github.com/smolvm/smolvm/vmm"
)

// Run runs the restored machine until it stops (as vmm.Machine.Run). When
// the daemon reports that it cannot serve the guest's memory (a frame
// failed verification or could not be fetched, or the daemon died or hung)
// the machine is stopped and Run returns that error, naming the frame
// (errors.Is pager.ErrFrameUnavailable or pager.ErrDaemonGone).
func (r *Restored) Run(ctx context.Context) error {
	r.markAccess()
	r.Timeline.mark(&r.Timeline.Resumed)
	err := r.Machine.Run(ctx)
	r.stopWatch()
	if ferr := r.FaultErr(); ferr != nil {
		return fmt.Errorf("snapshot: %s: guest memory unavailable, VM stopped: %w", r.Bundle, ferr)
	}
	return err
}

// startWatch watches the pager from registration on: a fault can come
// before Run (a device restoring its queues touches guest memory).
func (r *Restored) startWatch() {
	r.watchStop, r.watchDone = make(chan struct{}), make(chan struct{})
	go r.watchPager()
}

// stopWatch ends the watcher (idempotent).
func (r *Restored) stopWatch() {
	r.watchOnce.Do(func() {
		if r.watchStop != nil {
			close(r.watchStop)
			<-r.watchDone
		}
	})
}

// watchPager stops the machine on the pager's first error. Threads blocked
// on a page nobody will serve (a vCPU, or a device goroutine reading a
// queue) are released by closing the userfaultfd: they see zero pages, but
// the guest is being stopped and is never saved or resumed.
func (r *Restored) watchPager() {
	defer close(r.watchDone)
	select {
	case err := <-r.client.Err():
		r.mu.Lock()
		r.faultErr = err
		r.mu.Unlock()
		r.Machine.Stop()
		time.Sleep(100 * time.Millisecond) // let kicked vCPUs leave KVM_RUN first
		r.releaseMemory()
	case <-r.watchStop:
	}
}

// FaultErr is the pager error that stopped the machine, if any.
func (r *Restored) FaultErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faultErr
}

// Identity is a new identity for a clone: fresh host entropy, hostname,
// machine-id, the host's time, and the new MAC of its network device.
func (r *Restored) Identity(hostname string) agent.IdentityRequest {
	req := agent.IdentityRequest{Entropy: make([]byte, 64), Hostname: hostname, TimeUnixNano: time.Now().UnixNano()}
	_, _ = rand.Read(req.Entropy)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	req.MachineID = hex.EncodeToString(id)
	if n := r.Machine.Network(); n != nil && r.Saved.Config.Net != nil && n.MAC != r.Saved.Config.Net.MAC {
		req.OldMAC, req.MAC = r.Saved.Config.Net.MAC, n.MAC
		req.RenewLease = strings.HasPrefix(n.Mode, "tap")
	}
	return req
}

// ReadyResult is what Ready learned.
type ReadyResult struct {
	Identity agent.IdentityResult `json:"identity"`
	// WorkingSet is what the daemon recorded (Record, uffd), else nil.
	WorkingSet *pager.WorkingSet `json:"-"`
	// Attempts is how many connections to the agent were tried.
	Attempts int         `json:"attempts"`
	Memory   MemoryStats `json:"memory"`
}

// dialTimeout bounds each attempt to connect to a restored guest's agent.
// Shorter bounds (0.3 s growing to 5 s) were tried: they did not make ready
// sooner once the working set is copied in before the vCPUs run (the agent
// then answers the first attempt): kept at 5 s. (A recording restore that
// hung in the identity handshake then can be explained by a late
// TRANSPORT_RESET silently closing the agent's end, now prevented by the
// vsock device; not reproduced as such: docs/SNAPSHOT.md, "Fragile".)
func dialTimeout(int) time.Duration { return 5 * time.Second }

// Ready waits for the guest agent of the running machine (retrying while
// the guest's vsock comes back), gives the clone its identity (req), and
// marks the timeline: the restored guest is ready. With a pager it then
// stops recording and returns the working set; it also reports how much
// memory was read up to this point.
func (r *Restored) Ready(ctx context.Context, req agent.IdentityRequest) (*ReadyResult, error) {
	if r.opts.VsockPath == "" || !r.Saved.Config.Vsock {
		return nil, errors.New("snapshot: the restored machine has no vsock: no agent to talk to")
	}
	var (
		res  = &ReadyResult{}
		last error
	)
	for {
		if err := r.FaultErr(); err != nil {
			return nil, fmt.Errorf("snapshot: guest memory unavailable: %w", err)
		}
		if r.Machine.StopReason() != vmm.StopNone {
			return nil, fmt.Errorf("snapshot: the restored VM stopped (%v) before its agent answered", r.Machine.StopReason())
		}
		// CONNECT, hello and the identity go out in one write (one round
		// trip once the guest accepts).
		connected := false
		var err error
		res.Identity, err = agent.DialIdentity(ctx, dialTimeout(res.Attempts), r.opts.VsockPath, req, func() {
			connected = true
			r.Timeline.mark(&r.Timeline.Connected)
		})
		res.Attempts++
		if connected && err != nil && ctx.Err() == nil && !errors.Is(err, agent.ErrRemote) && !errors.Is(err, agent.ErrMalformed) && !errors.Is(err, agent.ErrVersion) {
			// Connected: the agent runs. Applying the identity is not
			// retried (it is not idempotent); it may be slow while the
			// guest faults its memory in.
			return nil, fmt.Errorf("snapshot: guest agent: %w", err)
		}
		if err == nil {
			break
		}
		if errors.Is(err, agent.ErrRemote) || errors.Is(err, agent.ErrMalformed) || errors.Is(err, agent.ErrVersion) {
			// The agent answers but cannot take an identity (an older
			// agent): the guest is up, the clone keeps the old one.
			res.Identity.Errors = append(res.Identity.Errors, err.Error())
			break
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("snapshot: guest agent not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.Timeline.mark(&r.Timeline.Ready)
	var err error
	if r.client != nil {
		if res.WorkingSet, err = r.client.Ready(ctx); err != nil {
			return res, fmt.Errorf("snapshot: pager ready: %w", err)
		}
	}
	if res.Memory, err = r.MemoryStats(ctx); err != nil {
		return res, err
	}
	return res, nil
}
