package vmm

import (
	"fmt"
	"io"
	"os"

	"github.com/smolvm/smolvm/vmm/arch/amd64"
)

// Config describes a machine to boot.
type Config struct {
	// Kernel is the path of a bzImage; Initrd of an initramfs (optional).
	Kernel, Initrd string
	// Cmdline is the kernel command line.
	Cmdline string
	// CPUs is the number of vCPUs (1..amd64.MaxCPUs).
	CPUs int
	// MemBytes is guest RAM in bytes, a multiple of MemAlign.
	MemBytes int64
	// Console receives the serial console's output (nil discards it).
	Console io.Writer
	// ConsoleIn, if not nil, is read and fed to the serial port. Run stops
	// reading when the machine stops; a Read that blocks forever keeps one
	// goroutine until it returns, unless ConsoleIn is an *os.File that
	// supports deadlines (then Run interrupts it).
	ConsoleIn io.Reader
	// VsockPath, if set, gives the machine a virtio-vsock device (guest CID
	// 3) whose host side is a unix socket at this path: host clients
	// connect there and write "CONNECT <port>\n"; guest connections to
	// host port P reach the unix socket VsockPath_P.
	VsockPath string
	// Disks are the virtio-blk disks, in guest order (the first is
	// /dev/vda). Every machine also gets a virtio-rng device.
	Disks []DiskConfig
	// Net is the guest's network interface (net.go); nil gives it none.
	Net *NetConfig
	// Memory says what backs guest RAM (restore.go); the zero value is
	// anonymous memory.
	Memory MemoryBacking
	// Log receives the devices' diagnostics, one line each (nil discards
	// them): a vsock connection refused or not answered, a restored guest
	// that did not act on its transport reset.
	Log io.Writer
}

// MemAlign is the granularity of guest RAM sizes.
const MemAlign = 2 << 20

// MinMemBytes is the least guest RAM a machine accepts; the kernel's own
// needs (init_size, initrd) are checked when it is loaded.
const MinMemBytes = 16 << 20

func (c *Config) validate() error {
	if c.Kernel == "" {
		return fmt.Errorf("%w: no kernel given", ErrConfig)
	}
	return c.validateMachine()
}

// validateMachine checks what a booted and a restored machine both need.
func (c *Config) validateMachine() error {
	if c.CPUs < 1 || c.CPUs > amd64.MaxCPUs {
		return fmt.Errorf("%w: %d vCPUs, want 1..%d", ErrConfig, c.CPUs, amd64.MaxCPUs)
	}
	if c.MemBytes < MinMemBytes {
		return fmt.Errorf("%w: %d bytes of memory, need at least %d MiB", ErrConfig, c.MemBytes, MinMemBytes>>20)
	}
	if c.MemBytes%MemAlign != 0 {
		return fmt.Errorf("%w: memory size %d is not a multiple of %d MiB", ErrConfig, c.MemBytes, MemAlign>>20)
	}
	seen := map[string]bool{}
	for i, d := range c.Disks {
		if err := d.validate(i, seen); err != nil {
			return err
		}
	}
	return c.Net.validate()
}

// readFile reads a kernel or initrd with an error naming its role.
func readFile(role, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, role, err)
	}
	return b, nil
}
