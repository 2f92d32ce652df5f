package usernet_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/network"
	"github.com/smolvm/smolvm/vmm/network/usernet"
)

// The test binary is also the network helper (role "helper") and a stand-in
// VMM that starts one and prints its pid (role "vmm"), chosen by roleEnv.
const roleEnv = "SMOLVM_USERNET_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "helper":
		os.Exit(usernet.RunHelper(os.Stdin, os.Stdout, os.Stderr))
	case "vmm":
		os.Exit(fakeVMM())
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv(network.HelperEnv, exe)
	os.Exit(m.Run())
}

// asHelperParent makes the helpers this test starts run as helpers (the
// variable is not set process-wide: fuzz workers are this binary too).
func asHelperParent(t *testing.T) { t.Setenv(roleEnv, "helper") }

// fakeVMM starts a helper, prints its pid and the forward's port, and waits
// to be killed.
func fakeVMM() int {
	os.Setenv(roleEnv, "helper")
	p, err := network.StartUser(network.UserConfig{MAC: guestMAC, Forwards: []network.PortForward{
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: mustAtoi(os.Getenv("FAKE_VMM_PORT")), GuestPort: 80, Proto: network.TCP},
	}})
	if err == nil {
		err = p.Ready(10 * time.Second)
	}
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println(p.Pid())
	time.Sleep(time.Minute)
	return 0
}

func mustAtoi(s string) uint16 {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return uint16(n)
}

// alive reports whether pid exists (and is not a zombie of ours).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

// A VMM that dies (SIGKILL: no Close) takes its helper with it: the helper's
// stdin ends, it closes the forward's listener and exits.
func TestHelperDiesWithItsVMM(t *testing.T) {
	port := freePort(t, "tcp")
	vmm := exec.Command(os.Args[0])
	vmm.Env = append(os.Environ(), roleEnv+"=vmm", "FAKE_VMM_PORT="+strconv.Itoa(int(port)))
	out, err := vmm.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := vmm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vmm.Process.Kill(); vmm.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("fake VMM: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("fake VMM said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("helper %d not running while its VMM is", pid)
	}
	if !listening(t, port) {
		t.Fatal("forward not listening while the helper runs")
	}
	vmm.Process.Kill()
	vmm.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("helper %d still running 10 s after its VMM was killed", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing listens there any more (the connection made above may hold
	// the port in a closing state for a while, so it is not bound again).
	if listening(t, port) {
		t.Fatalf("port %d still accepts after the helper exited", port)
	}
}

// listening reports whether a TCP listener accepts on 127.0.0.1:port. A
// dial to a free port in the ephemeral range can connect to itself (TCP
// simultaneous open from the same port): that is no listener.
func listening(t *testing.T, port uint16) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial port %d: %v, want a connection or connection refused", port, err)
		}
		return false
	}
	defer c.Close()
	return c.LocalAddr().String() != c.RemoteAddr().String()
}

// Close ends the helper process, and Close again is a no-op.
func TestHelperCloseEndsProcess(t *testing.T) {
	asHelperParent(t)
	p, err := network.StartUser(network.UserConfig{MAC: guestMAC})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Backend().Close()
	if err := p.Ready(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	default:
		t.Fatal("Close returned before the helper exited")
	}
	if alive(pid) {
		t.Fatalf("helper %d still alive after Close", pid)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A helper that is not there is a clear error before anything is bound.
func TestHelperMissing(t *testing.T) {
	t.Setenv(network.HelperEnv, "")
	t.Setenv("PATH", t.TempDir())
	port := freePort(t, "tcp")
	_, err := network.StartUser(network.UserConfig{MAC: guestMAC, Forwards: []network.PortForward{
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: port, GuestPort: 80, Proto: network.TCP},
	}})
	if !errors.Is(err, network.ErrNoHelper) {
		t.Fatalf("error %v, want ErrNoHelper", err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d bound after a failed StartUser: %v", port, err)
	}
	ln.Close()
}

// A bad config line is refused on stdout, before the helper touches its
// inherited descriptors.
func TestRunHelperBadConfig(t *testing.T) {
	for _, tc := range []struct{ name, line, want string }{
		{"empty", "", "config"},
		{"not json", "{mac", "config line"},
		{"bad mac", `{"mac":"01:00:00:00:00:01"}`, "not a unicast"},
		{"bad forward", `{"mac":"52:54:00:00:00:01","forwards":["80"]}`, "bad specification"},
		{"forward twice", `{"mac":"52:54:00:00:00:01","forwards":["8080:80","8080:81"]}`, "bad specification"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.line
			if in != "" {
				in += "\n"
			}
			var out, log bytes.Buffer
			if code := usernet.RunHelper(strings.NewReader(in), &out, &log); code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			if !strings.HasPrefix(out.String(), network.HelperFailed) || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("stdout %q, want %q... naming %q", out.String(), network.HelperFailed, tc.want)
			}
		})
	}
}
