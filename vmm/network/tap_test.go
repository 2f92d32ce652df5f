package network_test

import (
	"errors"
	"os"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

// OpenTap creates a non-persistent tap (root only) that vanishes on Close.
// No frame is sent: the interface stays down, without addresses.
func TestOpenTap(t *testing.T) {
	if _, err := os.Stat("/dev/net/tun"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and /dev/net/tun")
	}
	const name = "smolvmtest0"
	tap, err := network.OpenTap(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + name); err != nil {
		tap.Close()
		t.Fatalf("tap interface not created: %v", err)
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/sys/class/net/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tap interface still there after Close: %v", err)
	}
	if _, err := network.OpenTap("bad/name"); err == nil {
		t.Fatal("OpenTap accepted a name with '/'")
	}
}
