package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/agent"
)

// Linux ioctls on /dev/random (include/uapi/linux/random.h) and for a
// network interface's hardware address.
const (
	rndAddEntropy = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG = 0x5207     // _IO('R', 0x07)
	siocSIFHWADDR = 0x8924
	arphrdEther   = 1
)

var machineIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// applyIdentity gives a restored clone its own identity (agent.IdentityRequest):
// entropy first, so that anything the guest derives afterwards differs
// between clones.
func applyIdentity(req agent.IdentityRequest) agent.IdentityResult {
	res := agent.IdentityResult{StepS: map[string]float64{}}
	last := time.Now()
	step := func(name string, err error) {
		now := time.Now()
		res.StepS[name] = now.Sub(last).Seconds()
		last = now
		if err != nil {
			res.Errors = append(res.Errors, name+": "+err.Error())
			return
		}
		res.Applied = append(res.Applied, name)
	}
	if len(req.Entropy) > 0 {
		added, err := addEntropy(req.Entropy)
		step("entropy", err)
		if added {
			step("reseed", reseedCRNG())
		}
	}
	if req.Hostname != "" {
		step("hostname", unix.Sethostname([]byte(req.Hostname)))
	}
	if req.MachineID != "" {
		step("machine-id", writeMachineID(req.MachineID))
	}
	if req.TimeUnixNano != 0 {
		ts := unix.NsecToTimespec(req.TimeUnixNano)
		step("clock", unix.ClockSettime(unix.CLOCK_REALTIME, &ts))
	}
	if req.MAC != "" {
		ifname, err := setMAC(req.OldMAC, req.MAC)
		step("mac", err)
		if err == nil {
			if req.RenewLease {
				step("lease", renewLease(ifname))
			}
			step("announce", announce(ifname))
		}
	}
	res.Uptime = uptime()
	return res
}

// addEntropy mixes b into the input pool, credited at 8 bits a byte
// (RNDADDENTROPY needs CAP_SYS_ADMIN: the agent runs as root).
func addEntropy(b []byte) (bool, error) {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+(len(b)+3)/4*4)
	binary.NativeEndian.PutUint32(buf[0:], uint32(len(b)*8))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(b)))
	copy(buf[8:], b)
	if err := ioctlPtr(f.Fd(), rndAddEntropy, unsafe.Pointer(&buf[0])); err != nil {
		return false, fmt.Errorf("RNDADDENTROPY: %w", err)
	}
	return true, nil
}

// reseedCRNG makes the CRNG take a new key from the input pool now.
func reseedCRNG() error {
	f, err := os.OpenFile("/dev/random", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

func ioctlPtr(fd uintptr, req uintptr, p unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(p)); e != 0 {
		return e
	}
	return nil
}

// writeMachineID replaces /etc/machine-id (temp file, rename).
func writeMachineID(id string) error {
	if !machineIDRE.MatchString(id) {
		return fmt.Errorf("%q is not 32 lowercase hex digits", id)
	}
	const path = "/etc/machine-id"
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".smolvm-tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o444); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// setMAC gives the interface whose address is oldMAC the address mac and
// returns its name.
func setMAC(oldMAC, mac string) (string, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("bad MAC %q", mac)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		if strings.EqualFold(ifc.HardwareAddr.String(), hw.String()) {
			return ifc.Name, nil // already done (a repeated request)
		}
	}
	for _, ifc := range ifs {
		if !strings.EqualFold(ifc.HardwareAddr.String(), oldMAC) {
			continue
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		// struct ifreq: name[16], then struct sockaddr (family, data[14]).
		var req [40]byte
		copy(req[:unix.IFNAMSIZ-1], ifc.Name)
		binary.NativeEndian.PutUint16(req[16:], arphrdEther)
		copy(req[18:], hw)
		if err := ioctlPtr(uintptr(fd), siocSIFHWADDR, unsafe.Pointer(&req[0])); err != nil {
			return "", fmt.Errorf("%s: SIOCSIFHWADDR: %w", ifc.Name, err)
		}
		return ifc.Name, nil
	}
	return "", fmt.Errorf("no interface has address %s", oldMAC)
}

// uptime is the seconds since boot, as the first field of /proc/uptime.
func uptime() float64 {
	// CLOCK_BOOTTIME is what /proc/uptime prints, without the procfs
	// open, read and close (slow in a guest just restored under nested
	// emulation, where every first code path is).
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}
