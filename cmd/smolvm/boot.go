package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/control"
	"github.com/smolvm/smolvm/vmm/guest"
)

// defaultCmdline is the kernel command line of `smolvm boot`: the console on
// COM1 and an immediate reboot (which ends the VM) on panic.
const defaultCmdline = "console=ttyS0 panic=-1"

type bootFlags struct {
	kernel, initrd, cmdline, mem, name string
	cpus                               int
	disks                              []string // --disk, parsed by boot_disk.go
	net                                string   // --net, parsed by boot_net.go
	publish                            []string // -p, parsed by boot_net.go
}

func init() {
	var f bootFlags
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Boot a Linux kernel in a micro-VM in the foreground",
		Long: `boot starts a VM from a kernel and initramfs (by default the Debian cloud
kernel and smolvm's own initramfs) and runs it in the foreground: the guest's
serial console is on stdout and stdin is typed into it (raw mode on a
terminal; press Ctrl-A then x to stop the VM). boot exits 0 when the guest
powers off or reboots; SIGINT and SIGTERM stop the VM.

--initrd "" boots without an initramfs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBoot(cmd, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kernel, "kernel", "", "bzImage to boot (default: newest /boot/vmlinuz-*-cloud-amd64)")
	fl.StringVar(&f.initrd, "initrd", "", "initramfs (default: smolvm's default guest initramfs)")
	fl.StringVar(&f.cmdline, "cmdline", defaultCmdline, "kernel command line")
	fl.IntVar(&f.cpus, "cpus", 1, "number of vCPUs")
	fl.StringArrayVar(&f.disks, "disk", nil, diskFlagHelp)
	fl.StringVar(&f.net, "net", "user", netFlagHelp)
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, publishFlagHelp)
	fl.StringVar(&f.mem, "mem", "256M", "guest memory (e.g. 256M, 1G)")
	fl.StringVar(&f.name, "name", "", "name of the VM: gives it a state dir with a control socket and vsock, for smolvm exec/ps/stop (docs/CONTROL.md)")
	register(cmd)
}

func runBoot(cmd *cobra.Command, f bootFlags) error {
	mem, err := parseSize(f.mem)
	if err != nil {
		return fmt.Errorf("--mem: %w", err)
	}
	netCfg, err := parseNetFlags(f.net, f.publish)
	if err != nil {
		return err
	}
	if f.kernel == "" {
		if f.kernel, err = guest.Kernel(); err != nil {
			return err
		}
	}
	if !cmd.Flags().Changed("initrd") {
		agentBin, err := guest.DefaultAgent() // bin/smolvm-agent, for smolvm exec
		if err != nil {
			return err
		}
		if f.initrd, err = guest.Initramfs(guest.Options{Agent: agentBin}); err != nil {
			return err
		}
	}

	stdin, restore, err := openConsoleInput()
	if err != nil {
		return err
	}
	defer restore()

	var ctl *vmControl // state dir, control socket, agent readiness (vm_control.go)
	if f.name != "" {
		if ctl, err = createVMControl(f.name); err != nil {
			return err
		}
		defer ctl.close()
	}

	var stateDir string
	if ctl != nil {
		stateDir = ctl.dir.Path
	}
	disks, err := parseDiskFlags(f.disks, stateDir)
	if err != nil {
		return err
	}

	m, err := vmm.New(vmm.Config{
		Kernel: f.kernel, Initrd: f.initrd, Cmdline: f.cmdline,
		CPUs: f.cpus, MemBytes: mem,
		Console: os.Stdout, ConsoleIn: stdin, Log: os.Stderr,
		VsockPath: ctl.vsockPath(),
		Disks:     disks,
		Net:       netCfg,
	})
	if err != nil {
		return f.named(err)
	}
	defer m.Close()
	if err := ctl.start(m, control.Info{CPUs: f.cpus, MemBytes: mem, Kernel: f.kernel, Initrd: f.initrd, Forwards: publishedForwards(netCfg)}); err != nil {
		return f.named(err)
	}

	// SIGINT/SIGTERM and the console escape cancel Run; the process then
	// exits with 128 + the signal's number (130 for the escape, as for ^C).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var stopSig atomic.Int32
	go func() {
		select {
		case s := <-sigs:
			stopSig.Store(int32(s.(syscall.Signal)))
			cancel()
		case <-ctx.Done():
		}
	}()
	stdin.onEscape = func() {
		stopSig.Store(int32(syscall.SIGINT))
		cancel()
	}

	runErr := m.Run(ctx)
	restore()
	if runErr != nil {
		var ee *vmm.ExitError
		if errors.As(runErr, &ee) {
			return &exitError{code: 2, err: f.named(runErr)}
		}
		return f.named(runErr)
	}
	switch r := m.StopReason(); r {
	case vmm.StopPowerOff, vmm.StopReboot:
		fmt.Fprintf(os.Stderr, "smolvm: %v\n", f.named(fmt.Errorf("guest %s", map[vmm.StopReason]string{vmm.StopPowerOff: "powered off", vmm.StopReboot: "rebooted"}[r])))
		return nil
	default:
		if ctl.stopRequested() {
			fmt.Fprintf(os.Stderr, "smolvm: %v\n", f.named(errors.New("stopped by request (smolvm stop)")))
			return nil
		}
		sig := syscall.Signal(stopSig.Load())
		if sig == 0 {
			sig = syscall.SIGINT
		}
		return &exitError{code: 128 + int(sig), err: f.named(fmt.Errorf("VM stopped (%v) before the guest powered off", sig))}
	}
}

// named prefixes err with the VM's name, when it has one.
func (f bootFlags) named(err error) error {
	if f.name == "" {
		return err
	}
	return fmt.Errorf("%s: %w", f.name, err)
}
