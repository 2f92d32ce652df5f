package vsock_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/vmm/guest"
)

// The lab test (kvm_test.go) installs this test binary in the guest as its
// agent; /init starts it as /usr/sbin/smolvm-agent, and TestMain then runs
// the guest side of the test instead of the tests:
//   - port probeEchoPort: echo every connection until EOF, then close;
//   - at start: connect to the host on probeHelloPort, send a greeting with
//     the guest's CID, half-close, print the host's reply on the console.
const (
	probeEchoPort  = 52
	probeHelloPort = 53
)

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == guest.AgentName && os.Getpid() != 1 {
		os.Exit(guestProbe())
	}
	os.Exit(m.Run())
}

func guestProbe() int {
	say := func(format string, args ...any) { fmt.Printf("vsockprobe: "+format+"\n", args...) }
	lfd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(lfd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: probeEchoPort})
	}
	if err == nil {
		err = unix.Listen(lfd, 64)
	}
	if err != nil {
		say("listen on port %d: %v", probeEchoPort, err)
		return 1
	}
	say("listening on port %d", probeEchoPort)
	go hello(say)
	for {
		fd, _, err := unix.Accept(lfd)
		if err != nil {
			say("accept: %v", err)
			return 1
		}
		go echo(fd)
	}
}

// echo copies what arrives back until EOF, then closes.
func echo(fd int) {
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			// After a restore the device's TRANSPORT_RESET lands here.
			fmt.Printf("vsockprobe: echo connection ended: %v\n", err)
			return
		}
		if n == 0 {
			unix.Shutdown(fd, unix.SHUT_WR)
			return
		}
		for p := buf[:n]; len(p) > 0; {
			w, err := unix.Write(fd, p)
			if err != nil {
				return
			}
			p = p[w:]
		}
	}
}

// hello greets the host, retrying while its listener is not up yet.
func hello(say func(string, ...any)) {
	cid, _ := localCID()
	for attempt := 0; ; attempt++ {
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			say("socket: %v", err)
			return
		}
		err = unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: probeHelloPort})
		if err != nil {
			unix.Close(fd)
			if attempt == 50 {
				say("connect to host port %d: %v", probeHelloPort, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		msg := fmt.Sprintf("hello from cid %d\n", cid)
		unix.Write(fd, []byte(msg))
		unix.Shutdown(fd, unix.SHUT_WR)
		var reply []byte
		buf := make([]byte, 4096)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				break
			}
			reply = append(reply, buf[:n]...)
		}
		unix.Close(fd)
		say("host replied %q sha256 %x", reply, sha256.Sum256(reply))
		return
	}
}

// localCID asks /dev/vsock for the guest's CID.
func localCID() (uint32, error) {
	f, err := os.Open("/dev/vsock")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return unix.IoctlGetUint32(int(f.Fd()), unix.IOCTL_VM_SOCKETS_GET_LOCAL_CID)
}
