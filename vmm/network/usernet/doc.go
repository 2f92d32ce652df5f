// Package usernet is the user-mode network itself: the virtual network of
// github.com/containers/gvisor-tap-vsock (a gVisor netstack with DHCP, DNS,
// NAT to the host's loopback, and port forwards) serving one guest's frames
// (docs/NET.md).
//
// It runs in the network helper (cmd/smolvm-net, RunHelper), a process of
// its own beside each VMM that has a user-mode network: the VMM keeps only
// the device's end of a frame socket pair (network.StartUser). So the VMM
// binary links none of the netstack (whose package initialisers cost a
// smolvm start ~7 ms on this project's machines, and ten times that under
// emulation), and the netstack, which parses everything the guest sends,
// runs outside the process that holds guest memory and the KVM descriptors.
// New runs it in process, for tests.
//
// What this package must not do: send traffic anywhere the guest did not
// ask for (no probes), touch the host's own network configuration, or be
// imported by the VMM (vmm, snapshot, cmd/smolvm): that would undo the
// split above.
//
// Known limit: gvisor-tap-vsock's virtual network has no Close; its DHCP
// and DNS goroutines live until the process exits (in the helper, that is
// at once). User.Close stops everything smolvm starts (frame pump,
// forwards) and detaches the guest.
package usernet
