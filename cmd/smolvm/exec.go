package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/agent"
	"github.com/smolvm/smolvm/vmm/control"
)

// Exit statuses of `smolvm exec` itself (the command's own status is passed
// through otherwise).
const (
	exitExecFailed  = 125 // the VM or its agent could not be reached
	exitStartFailed = 127 // the command could not be started in the guest
)

type execFlags struct {
	env     []string
	workdir string
	noStdin bool
	wait    time.Duration
}

func init() {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARG...]",
		Short: "Run a command in a running VM through its guest agent",
		Long: `exec runs COMMAND in the VM named NAME (started with smolvm boot --name)
through the guest agent on vsock. Its stdin, stdout and stderr pass through,
SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded, and exec exits with the
command's status (128+N if signal N killed it). exec itself exits 125 when
the VM or its agent cannot be reached and 127 when the command cannot be
started. If the agent has not reported ready yet, exec waits up to --wait.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), f, args[0], args[1:])
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (K=V, repeatable)")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory in the guest")
	fl.BoolVarP(&f.noStdin, "no-stdin", "n", false, "give the command /dev/null as stdin")
	fl.DurationVar(&f.wait, "wait", 60*time.Second, "how long to wait for the guest agent to be ready")
	register(cmd)
}

func runExec(ctx context.Context, f execFlags, name string, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	failed := func(err error) error {
		return &exitError{code: exitExecFailed, err: fmt.Errorf("exec %s: %w", name, err)}
	}
	dir, err := control.Lookup(control.DefaultRoot(), name)
	if err != nil {
		return failed(err)
	}
	if err := waitReady(ctx, dir, f.wait); err != nil {
		return failed(err)
	}
	cmd := agent.Command{Args: args, Env: f.env, Dir: f.workdir, Stdout: os.Stdout, Stderr: os.Stderr}
	if !f.noStdin {
		cmd.Stdin = os.Stdin
	}
	code, err := runThroughAgent(ctx, dir.VsockSocket(), cmd, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	if err != nil {
		if code == exitStartFailed {
			return &exitError{code: code, err: fmt.Errorf("exec %s: %w", name, err)}
		}
		return failed(err)
	}
	if code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// waitReady polls the VM's status until its agent has reported ready.
func waitReady(ctx context.Context, dir *control.Dir, wait time.Duration) error {
	c := control.NewClient(dir.ControlSocket())
	deadline := time.Now().Add(wait)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(sctx)
		cancel()
		switch {
		case err != nil:
			// A VM that is starting has no control socket yet; one that
			// exited has no state dir any more.
			if _, serr := os.Stat(dir.Path); serr != nil {
				return fmt.Errorf("%w: the VM exited (%v)", control.ErrNotRunning, err)
			}
			if time.Now().After(deadline) {
				return err
			}
		case st.State == control.StateStopping:
			return fmt.Errorf("%w: the VM is stopping", control.ErrNotRunning)
		case st.Ready:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("the guest agent did not report ready within %v (is smolvm-agent in the initramfs?)", wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
