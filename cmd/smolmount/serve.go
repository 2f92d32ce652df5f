package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/smolvm/smolvm/fusefs"
	"github.com/smolvm/smolvm/registry"
)

// daemonConfig is one daemon's settings, from the command line.
type daemonConfig struct {
	bundle, mountpoint string
	storeDir, cacheDir string
	cacheBytes         int64
	maxRead            int
	readAheadKB        int
	allowOther, debug  bool
	insecure           bool      // oci:// over plain HTTP
	out                io.Writer // the ready line goes here
	onShutdown         func()    // called once shutdown starts
}

// processStart is close to when this process started (package
// initialisation), for the startup timeline in the log.
var processStart = time.Now()

// unmountTimeout bounds the final unmount.
const unmountTimeout = 15 * time.Second

// runDaemon opens the bundle, mounts it, starts the services, announces
// readiness and serves until ctx ends (a signal), the mount goes away, or a
// service fails; then it stops the services, unmounts and closes the bundle.
func runDaemon(ctx context.Context, cfg daemonConfig) (err error) {
	logger := log.New(os.Stderr, "smolmount: ", log.LstdFlags|log.Lmicroseconds)
	cb, modTime, closeBundle, err := openBundle(ctx, cfg, logger)
	if err != nil {
		return err
	}
	opened := time.Since(processStart)
	defer closeBundle()
	fb, err := fusefs.FromChunkstore(cb)
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(cfg.mountpoint, fb, fusefs.Options{
		MaxRead: cfg.maxRead, ReadAheadKB: cfg.readAheadKB, AllowOther: cfg.allowOther,
		ModTime: modTime, Logger: logger, Debug: cfg.debug,
	})
	if err != nil {
		return err
	}
	mounted := time.Since(processStart)
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), unmountTimeout)
		defer cancel()
		if uerr := srv.Unmount(uctx); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	bundleAbs := cfg.bundle
	if !registry.IsRef(cfg.bundle) {
		bundleAbs, _ = filepath.Abs(cfg.bundle)
	}
	recPath, err := fusefs.WriteRecord(fusefs.Record{PID: os.Getpid(), MountPoint: srv.Dir(), Bundle: bundleAbs, Dev: srv.Info().Dev(), Started: time.Now()})
	if err != nil {
		return err
	}
	defer fusefs.RemoveRecord(srv.Dir(), os.Getpid())

	failed := make(chan error, 1)
	var failOnce sync.Once
	env := &ServiceEnv{
		Bundle: cb, MountPoint: srv.Dir(), RunBase: strings.TrimSuffix(recPath, ".json"), Logger: logger,
		Fail: func(err error) { failOnce.Do(func() { failed <- err }) },
	}
	svcs := make([]Service, 0, len(serviceMakers))
	for _, mk := range serviceMakers {
		svcs = append(svcs, mk())
	}
	if _, err := startServices(ctx, env, svcs); err != nil {
		return err
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	logger.Printf("up %s after start: bundle opened %s, mounted %s, services %s", ms(time.Since(processStart)), ms(opened), ms(mounted), ms(time.Since(processStart)))
	fmt.Fprintf(cfg.out, "smolmount: ready: %s at %s (dev %s, pid %d)\n", cfg.bundle, srv.Dir(), srv.Info().Dev(), os.Getpid())

	var cause error
	select {
	case <-ctx.Done():
		logger.Printf("signalled: unmounting %s", srv.Dir())
	case <-srv.Done():
		logger.Printf("%s was unmounted", srv.Dir())
	case cause = <-failed:
		logger.Printf("a service failed: %v", cause)
	}
	if cfg.onShutdown != nil {
		cfg.onShutdown()
	}
	return errors.Join(cause, stopServices(svcs))
}
