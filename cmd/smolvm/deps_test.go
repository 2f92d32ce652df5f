package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The VMM binary must not link the user-mode netstack: it runs in the
// smolvm-net helper (docs/NET.md), and its package initialisers would cost
// every smolvm start (restores included) again.
func TestSmolvmLinksNoNetstack(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	banned := []string{"gvisor.dev/gvisor/", "github.com/containers/gvisor-tap-vsock/", "github.com/google/gopacket", "github.com/smolvm/smolvm/vmm/network/usernet"}
	var found []string
	for _, dep := range strings.Fields(string(out)) {
		for _, b := range banned {
			if strings.HasPrefix(dep, b) {
				found = append(found, dep)
			}
		}
	}
	if len(found) > 0 {
		t.Fatalf("cmd/smolvm links %d netstack packages (the VMM must use network.StartUser, not usernet), e.g. %s", len(found), found[0])
	}
}
