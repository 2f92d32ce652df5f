package usernet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/smolvm/smolvm/vmm/network"
)

// maxConfigLine bounds the helper's config line (a few hundred forwards).
const maxConfigLine = 1 << 20

// RunHelper is the network helper's whole life (cmd/smolvm-net; the VMM's
// side is network.StartUser): it reads a network.HelperConfig line from
// stdin, serves the virtual network on the inherited switch socket and
// listeners, answers network.HelperReady (or network.HelperFailed and why)
// on stdout, and serves until stdin ends or SIGTERM/SIGINT arrives. Logs go
// to logw. It returns the process's exit status.
func RunHelper(stdin io.Reader, stdout, logw io.Writer) int {
	u, err := startHelper(stdin, logw)
	if err != nil {
		fmt.Fprintf(stdout, "%s%v\n", network.HelperFailed, err)
		fmt.Fprintf(logw, "%s: %v\n", network.HelperName, err)
		return 1
	}
	fmt.Fprintln(stdout, network.HelperReady)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	eof := make(chan struct{})
	go func() {
		// The VMM never writes after the config: this returns when it
		// closes its end or dies.
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case s := <-sig:
		fmt.Fprintf(logw, "%s: %v: stopping\n", network.HelperName, s)
	}
	if err := u.Close(); err != nil {
		fmt.Fprintf(logw, "%s: close: %v\n", network.HelperName, err)
		return 1
	}
	return 0
}

// startHelper reads the config and serves it on the inherited descriptors.
func startHelper(stdin io.Reader, logw io.Writer) (*User, error) {
	br := bufio.NewReaderSize(stdin, 4096)
	var line []byte
	for {
		chunk, isPrefix, err := br.ReadLine()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		line = append(line, chunk...)
		if len(line) > maxConfigLine {
			return nil, fmt.Errorf("config: line longer than %d bytes", maxConfigLine)
		}
		if !isPrefix {
			break
		}
	}
	c, err := parseHelperConfig(line)
	if err != nil {
		return nil, err
	}
	c.Log = logw
	// net.FileConn and net.FileListener dup the descriptor: the inherited
	// one is closed at once, or a closed listener would still accept.
	swf := os.NewFile(uintptr(network.HelperSwitchFD), "switch frames")
	sw, err := net.FileConn(swf)
	swf.Close()
	if err != nil {
		return nil, fmt.Errorf("switch socket (fd %d): %w", network.HelperSwitchFD, err)
	}
	var lns []net.Listener
	for _, f := range c.Forwards {
		if f.Proto != network.TCP {
			continue
		}
		fd := network.HelperListenerFD(len(lns))
		lf := os.NewFile(uintptr(fd), "forward "+f.String())
		ln, err := net.FileListener(lf)
		lf.Close()
		if err != nil {
			sw.Close()
			network.CloseListeners(lns)
			return nil, fmt.Errorf("listener of -p %s (fd %d): %w", f, fd, err)
		}
		lns = append(lns, ln)
	}
	return Serve(c, sw, lns)
}

// parseHelperConfig reads a network.HelperConfig line.
func parseHelperConfig(line []byte) (network.UserConfig, error) {
	var hc network.HelperConfig
	if err := json.Unmarshal(line, &hc); err != nil {
		return network.UserConfig{}, fmt.Errorf("%w: config line: %w", network.ErrBadSpec, err)
	}
	mac, err := network.ParseMAC(hc.MAC)
	if err != nil {
		return network.UserConfig{}, err
	}
	c := network.UserConfig{MAC: mac}
	for _, s := range hc.Forwards {
		f, err := network.ParsePortForward(s)
		if err != nil {
			return network.UserConfig{}, err
		}
		c.Forwards = append(c.Forwards, f)
	}
	if err := network.CheckForwards(c.Forwards); err != nil {
		return network.UserConfig{}, err
	}
	return c, nil
}
