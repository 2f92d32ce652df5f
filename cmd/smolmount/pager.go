package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/smolvm/smolvm/pager"
)

// The daemon serves the userfaultfds of VMs resumed from its bundle on
// pager.SocketPath(RunBase) (pager.DaemonSocket(mountpoint) for a VMM),
// from the same images and frame cache as the mount.
func init() { registerService(func() Service { return &pagerService{} }) }

type pagerService struct {
	sock   string
	cancel context.CancelFunc
	done   chan error
}

func (p *pagerService) Name() string { return "pager" }

func (p *pagerService) Start(_ context.Context, env *ServiceEnv) error {
	p.sock = pager.SocketPath(env.RunBase)
	if err := os.Remove(p.sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stale socket %s: %w", p.sock, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.sock, Net: "unix"})
	if err != nil {
		return err
	}
	ln.SetUnlinkOnClose(true)
	srv := &pager.Server{Open: env.Bundle.Image, Logf: env.Logger.Printf}
	// Serving ends in Stop, not when the start context ends.
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() {
		err := srv.Serve(ctx, ln)
		if err != nil && ctx.Err() == nil {
			env.Fail(fmt.Errorf("pager: %w", err))
		}
		p.done <- err
	}()
	env.Logger.Printf("pager: serving userfaultfd registrations on %s", p.sock)
	return nil
}

// Stop closes the socket and every VM's session: their VMMs see the
// daemon go (pager.ErrDaemonGone) and stop their VMs.
func (p *pagerService) Stop(ctx context.Context) error {
	p.cancel()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pager sessions still ending: %w", ctx.Err())
	}
}
