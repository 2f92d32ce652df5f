package main

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/smolvm/smolvm/agent"
)

// TestApplyIdentityRefusals: steps with bad input fail naming the step and
// leave the others applied. (Hostname and clock are not exercised here: they
// would change the host; the lab's KVM tests check them in a guest.)
func TestApplyIdentityRefusals(t *testing.T) {
	tests := []struct {
		name    string
		req     agent.IdentityRequest
		step    string // the one step timed
		wantErr string
	}{
		{"bad machine-id", agent.IdentityRequest{MachineID: "not-hex"}, "machine-id", "machine-id: "},
		{"unknown interface", agent.IdentityRequest{OldMAC: "02:00:00:00:00:99", MAC: "02:00:00:00:00:98"}, "mac", "mac: no interface has address"},
		{"bad mac", agent.IdentityRequest{OldMAC: "02:00:00:00:00:99", MAC: "zz"}, "mac", "mac: bad MAC"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := applyIdentity(tc.req)
			if len(res.Errors) != 1 || !strings.HasPrefix(res.Errors[0], tc.wantErr) || len(res.Applied) != 0 {
				t.Fatalf("result %+v, want one error %q", res, tc.wantErr)
			}
			if res.Uptime <= 0 {
				t.Fatalf("uptime %v", res.Uptime)
			}
			if d, ok := res.StepS[tc.step]; len(res.StepS) != 1 || !ok || d < 0 {
				t.Fatalf("step times %v, want one for %q", res.StepS, tc.step)
			}
		})
	}
}

// TestApplyIdentityEntropy adds entropy and reseeds (harmless on the host;
// needs root for RNDADDENTROPY).
func TestApplyIdentityEntropy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("RNDADDENTROPY needs root")
	}
	res := applyIdentity(agent.IdentityRequest{Entropy: []byte("0123456789abcdef0123456789abcdef")})
	if strings.Join(res.Applied, ",") != "entropy,reseed" || len(res.Errors) != 0 {
		t.Fatalf("result %+v", res)
	}
	if _, ok := res.StepS["reseed"]; len(res.StepS) != 2 || !ok {
		t.Fatalf("step times %v, want entropy and reseed", res.StepS)
	}
}

// TestUptimeMatchesProc: uptime reads the clock /proc/uptime prints.
func TestUptimeMatchesProc(t *testing.T) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Skipf("no /proc/uptime: %v", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("/proc/uptime: %q", b)
	}
	proc, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := uptime(); got < proc || got > proc+5 {
		t.Fatalf("uptime() = %v s, /proc/uptime just before said %v s", got, proc)
	}
}
