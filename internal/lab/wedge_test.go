package lab

import "testing"

func TestConsoleWedged(t *testing.T) {
	for _, c := range []struct {
		console string
		want    bool
	}{
		{"", false},
		{"[  1.0] Linux version 6.1\n[  2.0] smolvm-lab: ok\n", false},
		{"[ 40.9] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [swapper/1:0]\n", false},
		{"[ 40.9] watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [x]\n[ 140.9] watchdog: BUG: soft lockup - CPU#0 stuck for 122s! [kthreadd:2]\n", true},
		{"[202.4] Kernel panic - not syncing: corrupted stack end detected inside scheduler\n", true},
		{"kvm [343]: vcpu0, guest rIP: 0xffffffffa3073744 Unhandled WRMSR(0xc0010007) = 0xffff\n", false},
	} {
		if got := consoleWedged([]byte(c.console)); got != c.want {
			t.Errorf("consoleWedged(%q) = %v, want %v", c.console, got, c.want)
		}
	}
}
