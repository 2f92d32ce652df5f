package network_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/vmm/network"
)

func TestGuestRenewScript(t *testing.T) {
	mac := [6]byte{0x52, 0x54, 0, 1, 2, 3}
	s := network.GuestRenewScript(mac)
	for _, want := range []string{"ip link set eth0 address 52:54:00:01:02:03", "udhcpc -i eth0", "arping -U"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if out, err := exec.Command("sh", "-n", "-c", s).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v: %s", err, out)
	}
}
