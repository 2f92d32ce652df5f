// Command smolvm-agent is smolvm's guest agent (docs/AGENT.md). It runs in
// the guest, started by the default initramfs's /init: it listens on vsock
// port 52 for exec sessions from the host and, once listening, tells the
// host it is ready by connecting to vsock port 53 on the host (CID 2).
//
// It is built static (CGO_ENABLED=0) so that it runs on a busybox
// initramfs. It must not depend on anything in the guest but the kernel's
// vsock transport.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/agent"
)

func main() {
	port := flag.Uint("port", agent.ExecPort, "vsock port to listen on")
	readyPort := flag.Uint("ready-port", agent.ReadyPort, "host vsock port told when the agent is ready (0: none)")
	flag.Parse()
	log.SetPrefix("smolvm-agent: ")
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, uint32(*port), uint32(*readyPort)); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(ctx context.Context, port, readyPort uint32) error {
	ln, err := listenVsock(port)
	if err != nil {
		return err
	}
	var dialReady func() (net.Conn, error)
	if readyPort != 0 {
		dialReady = func() (net.Conn, error) { return dialVsock(unix.VMADDR_CID_HOST, readyPort) }
	}
	return serve(ctx, ln, dialReady)
}

// serve runs the exec server on ln and, once it listens, tells the host it
// is ready through dialReady (if not nil). It returns when ctx ends or ln
// fails.
func serve(ctx context.Context, ln net.Listener, dialReady func() (net.Conn, error)) error {
	srv := &agent.Server{Name: "smolvm-agent/" + strconv.Itoa(agent.Version), Identity: applyIdentity}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	if dialReady != nil {
		go notifyReady(ctx, dialReady)
	}
	return <-done
}

// readyRetryFor bounds how long the agent keeps trying to report ready:
// the host's listener exists before the guest starts, so retries only
// cover a vsock device that is still coming up (slow under nested
// emulation); a VM without vsock gives up after this.
const readyRetryFor = 60 * time.Second

// notifyReady tells the host the agent listens, retrying with a growing
// pause (50 ms to 1 s) for up to readyRetryFor.
func notifyReady(ctx context.Context, dial func() (net.Conn, error)) {
	var last error
	pause := 50 * time.Millisecond
	deadline := time.Now().Add(readyRetryFor)
	for try := 0; try == 0 || time.Now().Before(deadline); try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(2*pause, time.Second)
		}
		c, err := dial()
		if err != nil {
			last = err
			continue
		}
		err = agent.SendReady(c, readyInfo())
		c.Close()
		if err == nil {
			return
		}
		last = err
	}
	log.Printf("could not tell the host it is ready: %v", last)
}

func readyInfo() agent.Ready {
	r := agent.Ready{PID: os.Getpid()}
	r.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		r.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	r.Uptime = uptime()
	return r
}
