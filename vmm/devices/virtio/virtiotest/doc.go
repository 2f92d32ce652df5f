// Package virtiotest drives virtio devices on the host the way Linux's
// virtio_pci_modern driver does, for tests: a Driver that finds the device
// on a pci.Host through configuration mechanism #1, walks its capabilities,
// resets it, negotiates features, sets up split queues in a fake guest
// memory, enables MSI-X or uses INTx, makes chains available (direct or
// indirect), notifies and collects used entries; and a FakeInterrupt that
// records what the transport raised. Test code only: no device may import it.
package virtiotest
