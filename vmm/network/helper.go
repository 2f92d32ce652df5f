package network

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// HelperName is the program that serves the user-mode network for a VMM
// (cmd/smolvm-net). HelperEnv names it explicitly, for tests and installs
// that keep it elsewhere; otherwise it is looked for beside the running
// executable, then on PATH.
const (
	HelperName = "smolvm-net"
	HelperEnv  = "SMOLVM_NET_HELPER"
)

// ErrNoHelper: the network helper program was not found.
var ErrNoHelper = errors.New("network: helper not found")

// UserConfig is what StartUser (and usernet.New, in process) needs.
type UserConfig struct {
	// MAC is the guest's address; it gets the static lease GuestIP.
	MAC [6]byte
	// Forwards are bound before StartUser returns.
	Forwards []PortForward
	// Log receives the virtual network's log lines (nil discards them).
	Log io.Writer
}

// HelperConfig is what the helper reads from its stdin, as one JSON line.
// Its fd 3 is the switch's end of the frame socket pair; fds 4, 5, ... are
// the listeners of the TCP forwards, in their order in Forwards.
type HelperConfig struct {
	MAC      string   `json:"mac"`
	Forwards []string `json:"forwards"` // PortForward.String forms
}

// Helper protocol: after its config line the helper prints HelperReady (or
// HelperFailed and the reason) as one line on stdout, then serves until its
// stdin ends: the VMM closed it, or died.
const (
	HelperReady  = "ready"
	HelperFailed = "error: "
	// HelperSwitchFD is the descriptor the helper finds its switch socket
	// on (the first one it inherits).
	HelperSwitchFD = 3
)

// HelperListenerFD is the descriptor of the i-th TCP forward's listener.
func HelperListenerFD(i int) int { return HelperSwitchFD + 1 + i }

// helperWait bounds how long Close waits for the helper to exit after its
// stdin closed, and again after it was killed.
const helperWait = 5 * time.Second

// UserProcess is a user-mode network served by a helper process: the
// virtual network (gvisor-tap-vsock's netstack, DHCP, DNS, NAT, forwards)
// runs outside the VMM, which keeps only the device's end of a frame socket
// pair. The VMM binds the forwards' host ports itself (a port in use fails
// StartUser) and passes them on. The helper exits when its stdin ends, so it
// never outlives its VMM.
type UserProcess struct {
	backend  *frameFile
	forwards []PortForward
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	log      io.Writer

	exited chan struct{} // closed once the helper has been waited for
	ready  chan error    // the helper's answer to its config (one value)

	mu      sync.Mutex
	exitErr error // the helper's exit, once exited
	closing bool

	closeOnce sync.Once
	closeErr  error
}

// HelperPath returns the network helper's path: $SMOLVM_NET_HELPER, else
// smolvm-net beside the running executable, else on PATH.
func HelperPath() (string, error) {
	if p := os.Getenv(HelperEnv); p != "" {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), HelperName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(HelperName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%w: %s is neither beside this program nor on PATH (make build puts it in bin/; or set %s)", ErrNoHelper, HelperName, HelperEnv)
}

// StartUser binds the forwards' host ports (ErrPortInUse, ErrBadSpec), then
// starts the helper on the switch's end of a new frame socket pair and
// returns at once: frames the guest sends before the helper is up wait in
// the socket. The helper's log, and a line if it fails or exits early, go
// to c.Log. The caller owns the result and must Close it; Backend's
// ownership passes to the device.
func StartUser(c UserConfig) (_ *UserProcess, err error) {
	path, err := HelperPath()
	if err != nil {
		return nil, err
	}
	lns, err := BindForwards(c.Forwards)
	if err != nil {
		return nil, err
	}
	// The listeners and the switch's end go to the child; this process
	// keeps none of them.
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
		CloseListeners(lns)
	}()
	for _, ln := range lns {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			return nil, fmt.Errorf("network: forward listener: %w", err)
		}
		files = append(files, f)
	}
	dev, sw, err := socketPair()
	if err != nil {
		return nil, err
	}
	files = append([]*os.File{sw}, files...)
	defer func() {
		if err != nil {
			dev.Close()
		}
	}()

	hc := HelperConfig{MAC: MACString(c.MAC)}
	for _, f := range c.Forwards {
		hc.Forwards = append(hc.Forwards, f.String())
	}
	line, err := json.Marshal(hc)
	if err != nil {
		return nil, fmt.Errorf("network: helper config: %w", err)
	}
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	p := &UserProcess{
		backend:  dev,
		forwards: append([]PortForward(nil), c.Forwards...),
		log:      log,
		exited:   make(chan struct{}),
		ready:    make(chan error, 1),
	}
	p.cmd = exec.Command(path)
	p.cmd.ExtraFiles = files
	p.cmd.Stderr = log
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("network: helper: %w", err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		stdin.Close()
		return nil, fmt.Errorf("network: helper: %w", err)
	}
	if err := p.cmd.Start(); err != nil {
		stdin.Close()
		return nil, fmt.Errorf("network: start %s: %w", path, err)
	}
	p.stdin = stdin
	// The pipe holds the one short line: this write does not wait for the
	// helper.
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		return nil, fmt.Errorf("network: helper config: %w", err)
	}
	go p.watch(stdout)
	return p, nil
}

// watch reads the helper's answer, then waits for it to exit; it records
// the exit and says so in the log unless Close asked for it.
func (p *UserProcess) watch(stdout io.Reader) {
	br := bufio.NewReader(stdout)
	answer, rerr := br.ReadString('\n')
	answer = strings.TrimSpace(answer)
	switch {
	case answer == HelperReady:
		p.ready <- nil
	case strings.HasPrefix(answer, HelperFailed):
		p.ready <- fmt.Errorf("network: %s: %s", HelperName, strings.TrimPrefix(answer, HelperFailed))
	default:
		p.ready <- fmt.Errorf("network: %s answered %q (%v)", HelperName, answer, rerr)
	}
	_, _ = io.Copy(io.Discard, br)
	err := p.cmd.Wait()
	p.mu.Lock()
	p.exitErr = err
	closing := p.closing
	p.mu.Unlock()
	if !closing {
		fmt.Fprintf(p.log, "network: %s exited (%v): the guest's user-mode network is gone\n", HelperName, err)
	}
	close(p.exited)
}

// Ready waits up to timeout for the helper to serve, and returns why not.
// The VMM need not wait (StartUser returns at once); tests do.
func (p *UserProcess) Ready(timeout time.Duration) error {
	select {
	case err := <-p.ready:
		p.ready <- err // later callers see the same answer
		return err
	case <-time.After(timeout):
		return fmt.Errorf("network: %s not ready after %v", HelperName, timeout)
	}
}

// Backend is the device's side of the network: pass it to the virtio-net
// device, which owns it from then on.
func (p *UserProcess) Backend() Backend { return p.backend }

// Forwards returns the port forwards, as bound.
func (p *UserProcess) Forwards() []PortForward { return append([]PortForward(nil), p.forwards...) }

// Pid is the helper's process ID.
func (p *UserProcess) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the helper has exited.
func (p *UserProcess) Exited() <-chan struct{} { return p.exited }

// Close ends the helper: its stdin closes, it releases the forwards and
// exits; one that has not exited within 5 s is killed. It does not close
// the Backend (the device does).
func (p *UserProcess) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing = true
		p.mu.Unlock()
		p.stdin.Close()
		select {
		case <-p.exited:
		case <-time.After(helperWait):
			_ = p.cmd.Process.Kill()
			select {
			case <-p.exited:
			case <-time.After(helperWait):
				p.closeErr = fmt.Errorf("network: %s (pid %d) did not exit after a kill", HelperName, p.Pid())
				return
			}
			p.closeErr = fmt.Errorf("network: %s (pid %d) did not exit within %v of its stdin closing; killed", HelperName, p.Pid(), helperWait)
			return
		}
		p.mu.Lock()
		err := p.exitErr
		p.mu.Unlock()
		if err != nil {
			p.closeErr = fmt.Errorf("network: %s: %w", HelperName, err)
		}
	})
	return p.closeErr
}
