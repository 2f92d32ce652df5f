// Command smolvm-net serves one VM's user-mode network (DHCP, DNS, NAT to
// the host's loopback, port forwards) in a process of its own. A smolvm VMM
// starts it (vmm/network.StartUser) with the switch's end of the guest's
// frame socket pair and the forwards' listeners; it is not meant to be run
// by hand. It exits when its stdin ends, so it never outlives its VMM.
package main

import (
	"os"

	"github.com/smolvm/smolvm/vmm/network/usernet"
)

func main() {
	os.Exit(usernet.RunHelper(os.Stdin, os.Stdout, os.Stderr))
}
