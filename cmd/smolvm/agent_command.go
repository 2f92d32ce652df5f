package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/smolvm/smolvm/agent"
)

// runThroughAgent dials the guest agent's exec port through a VM's vsock
// socket (10 s at most), runs cmd there, relays the signals in relay to it
// while it runs, and returns its exit status. A command the agent could not
// start returns exitStartFailed with the error; any other failure returns 0
// with it. smolvm exec and smolvm run -- CMD both run commands this way.
func runThroughAgent(ctx context.Context, vsock string, cmd agent.Command, relay ...os.Signal) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := agent.DialHybrid(dctx, vsock, agent.ExecPort)
	cancel()
	if err != nil {
		return 0, err
	}
	s, err := agent.Start(ctx, conn, cmd)
	if err != nil {
		var re *agent.RemoteError
		if errors.As(err, &re) && re.Code == agent.CodeStart {
			return exitStartFailed, err
		}
		return 0, err
	}
	if len(relay) > 0 {
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, relay...)
		defer signal.Stop(sigs)
		go func() {
			for {
				select {
				case sig := <-sigs:
					_ = s.Signal(sig.(syscall.Signal))
				case <-s.Done():
					return
				}
			}
		}()
	}
	st, err := s.Wait()
	if err != nil {
		return 0, err
	}
	return st.Code, nil
}
