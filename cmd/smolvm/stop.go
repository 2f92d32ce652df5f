package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/vmm/control"
)

func init() {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop a running VM",
		Long: `stop asks the VM named NAME to stop (PUT /stop on its control socket) and
waits until its process has exited and removed its state dir. If that takes
longer than --timeout, stop fails (the VM's process is left as it is).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStop(args[0], timeout)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for the VM to exit")
	register(cmd)
}

func runStop(name string, timeout time.Duration) error {
	dir, err := control.Lookup(control.DefaultRoot(), name)
	if err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := control.NewClient(dir.ControlSocket()).Stop(ctx); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	for {
		// Gone: the VM removed its state dir; not running: it died without
		// doing so, and Lookup removed the stale dir.
		if _, err := control.Lookup(control.DefaultRoot(), name); errors.Is(err, control.ErrNotFound) || errors.Is(err, control.ErrNotRunning) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s: the VM did not exit within %v (state dir %s)", name, timeout, dir.Path)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
