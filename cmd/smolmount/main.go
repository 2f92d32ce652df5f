// Command smolmount mounts a .smolmachine bundle as a read-only FUSE
// filesystem and serves its memory and disks lazily; it is also the bundle's
// daemon, hosting further services (the pager's userfaultfd server) on the
// same opened bundle and cache.
//
//	smolmount BUNDLE MOUNTPOINT [--cache DIR] [--cache-size SIZE] [--store DIR]
//	smolmount oci://REGISTRY/REPO:TAG MOUNTPOINT [--insecure] [...]
//	smolmount -u MOUNTPOINT
//
// See docs/SMOLMOUNT.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/smolvm/smolvm/fusefs"
	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "smolmount:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var (
		cfg       daemonConfig
		unmount   bool
		timeout   time.Duration
		cacheSize string
		maxRead   string
		readAhead string
	)
	cmd := &cobra.Command{
		Use:   "smolmount BUNDLE MOUNTPOINT | smolmount -u MOUNTPOINT",
		Short: "Mount a .smolmachine bundle as a lazy, verified, read-only FUSE filesystem",
		Long: `smolmount serves a bundle's config.json, kernel, initrd, memory, state and
disk/NAME as read-only files at MOUNTPOINT, fetching and verifying only the
frames that reads touch, through one cache shared by every reader. It runs in
the foreground until unmounted or sent SIGINT/SIGTERM, and prints a line
starting "smolmount: ready" once mounted.

BUNDLE may be oci://REGISTRY/REPO:TAG (see smolvm push): only the artifact's
manifest and config are fetched at start, then each frame a read needs by an
HTTP range request, verified, into the shared cache ($XDG_CACHE_HOME/smolvm).

smolmount -u MOUNTPOINT ends the daemon serving MOUNTPOINT (it unmounts
cleanly), or cleans up the stale mount of a dead or hung daemon (fusectl
abort, then a lazy unmount).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if unmount {
				if len(args) != 1 {
					return fmt.Errorf("-u takes exactly one MOUNTPOINT, got %d arguments", len(args))
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				err := fusefs.Unmount(ctx, args[0])
				if errors.Is(err, fusefs.ErrNotMounted) {
					return fmt.Errorf("%s: nothing is mounted there", args[0])
				}
				return err
			}
			if len(args) != 2 {
				return fmt.Errorf("want BUNDLE MOUNTPOINT, got %d arguments (see --help)", len(args))
			}
			cfg.bundle, cfg.mountpoint = args[0], args[1]
			var err error
			if cfg.cacheBytes, err = parseSize(cacheSize); err != nil {
				return fmt.Errorf("--cache-size: %w", err)
			}
			mr, err := parseSize(maxRead)
			if err != nil {
				return fmt.Errorf("--max-read: %w", err)
			}
			ra, err := parseSize(readAhead)
			if err != nil {
				return fmt.Errorf("--readahead: %w", err)
			}
			cfg.maxRead, cfg.readAheadKB = int(mr), int(ra>>10)
			if cfg.readAheadKB == 0 {
				cfg.readAheadKB = -1 // the kernel's default
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg.onShutdown = stop // a second signal then kills the usual way
			cfg.out = cmd.OutOrStdout()
			return runDaemon(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&unmount, "unmount", "u", false, "unmount MOUNTPOINT and end its daemon (or clean a stale mount)")
	f.DurationVar(&timeout, "timeout", 20*time.Second, "bound for -u")
	f.StringVar(&cfg.cacheDir, "cache", "", "spill directory for frames evicted from the memory cache")
	f.StringVar(&cacheSize, "cache-size", "256MiB", "memory cache of decompressed frames (SIZE: 512M, 2GiB, ...)")
	f.StringVar(&cfg.storeDir, "store", "", "chunk store directory holding a thin bundle's frames")
	f.BoolVar(&cfg.insecure, "insecure", false, "BUNDLE oci://REGISTRY/REPO:TAG over plain HTTP (a local registry)")
	f.StringVar(&maxRead, "max-read", "1MiB", "largest FUSE read request (128KiB..1MiB)")
	f.StringVar(&readAhead, "readahead", "1MiB", "kernel readahead for the mount as root (0: kernel default, 128KiB)")
	f.BoolVar(&cfg.allowOther, "allow-other", os.Geteuid() == 0, "let other users read the mount (default when root)")
	f.BoolVar(&cfg.debug, "debug", false, "log every FUSE request")
	return cmd
}
