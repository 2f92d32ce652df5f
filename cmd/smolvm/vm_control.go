package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/control"
)

// vmControl is what `smolvm boot` adds for a named VM (docs/CONTROL.md):
// its state dir, the control socket and the listener for the guest
// agent's ready notification (the unix socket "<vsock.sock>_53").
type vmControl struct {
	dir     *control.Dir
	readyLn net.Listener
	srv     *control.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped atomic.Bool // PUT /stop was asked
	// parent is the bundle the VM was restored from and parentDigest its
	// manifest digest (smolvm run sets them): snapshots dedup against it
	// and take the pages the clone never touched from it.
	parent, parentDigest string
}

// createVMControl makes the state dir of name (refusing a name in use) and
// binds the ready socket, so that both exist before the guest runs.
func createVMControl(name string) (*vmControl, error) {
	dir, err := control.Create(control.DefaultRoot(), name)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", dir.VsockSocket()+fmt.Sprintf("_%d", agent.ReadyPort))
	if err != nil {
		dir.Remove()
		return nil, fmt.Errorf("agent ready socket: %w", err)
	}
	return &vmControl{dir: dir, readyLn: ln}, nil
}

// vsockPath is the VM's vsock socket ("" without a state dir).
func (c *vmControl) vsockPath() string {
	if c == nil {
		return ""
	}
	return c.dir.VsockSocket()
}

// stopRequested reports whether the VM was stopped through the control
// socket (smolvm stop).
func (c *vmControl) stopRequested() bool { return c != nil && c.stopped.Load() }

// stopRecorder notes that a stop came through the control socket.
type stopRecorder struct {
	control.Machine
	stopped *atomic.Bool
}

func (s stopRecorder) Stop() {
	s.stopped.Store(true)
	s.Machine.Stop()
}

// start serves the control socket for m and records agent readiness; a nil
// c (no --name) does nothing.
func (c *vmControl) start(m control.Machine, info control.Info) error {
	if c == nil {
		return nil
	}
	info.Name, info.StateDir, info.Vsock = c.dir.Name, c.dir.Path, c.dir.VsockSocket()
	c.srv = control.NewServer(stopRecorder{m, &c.stopped}, info)
	if vm, ok := m.(*vmm.Machine); ok {
		c.srv.SetSnapshot(snapshotHandler(vm, c.parent, c.parentDigest, func() { c.stopped.Store(true) })) // snapshot.go
	}
	ln, err := control.Listen(c.dir.ControlSocket())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		if err := c.srv.Serve(ctx, ln); err != nil {
			fmt.Fprintf(os.Stderr, "smolvm: %s: %v\n", c.dir.Name, err)
		}
	}()
	go func() {
		defer c.wg.Done()
		_ = agent.ReadyListener(ctx, c.readyLn, func(r agent.Ready, at time.Time) {
			c.srv.SetReady(control.AgentInfo{Version: r.Version, Hostname: r.Hostname, Kernel: r.Kernel, GuestUptime: r.Uptime}, at)
			fmt.Fprintf(os.Stderr, "smolvm: %s: guest agent ready after %.2f s (guest uptime %.2f s)\n",
				c.dir.Name, c.srv.Status().ReadySeconds, r.Uptime)
		}, func(err error) {
			fmt.Fprintf(os.Stderr, "smolvm: %s: %v\n", c.dir.Name, err)
		})
	}()
	return nil
}

// close stops serving and removes the state dir; exec to the VM then
// fails with "no VM named ...".
func (c *vmControl) close() {
	if c == nil {
		return
	}
	if c.srv != nil {
		c.srv.SetStopping()
	}
	if c.cancel != nil {
		c.cancel()
	} else {
		c.readyLn.Close()
	}
	c.wg.Wait()
	if err := c.dir.Remove(); err != nil {
		fmt.Fprintf(os.Stderr, "smolvm: %s: %v\n", c.dir.Name, err)
	}
}
