package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
)

// Service runs inside the daemon alongside the FUSE server, on the same
// opened bundle and shared frame cache, for as long as the mount lives: it
// is started after the mount is up and stopped before it is unmounted. The
// pager's userfaultfd server is one: add a file to this package that calls
// registerService from an init function.
type Service interface {
	// Name names the service in logs and errors.
	Name() string
	// Start sets the service up and returns; long-running work goes in
	// goroutines the service owns. A Start error aborts the daemon.
	Start(ctx context.Context, env *ServiceEnv) error
	// Stop ends the service and releases everything it holds, within ctx.
	Stop(ctx context.Context) error
}

// ServiceEnv is what a service gets from the daemon.
type ServiceEnv struct {
	// Bundle is the opened bundle (manifest, images, shared cache); the
	// daemon closes it after every service has stopped.
	Bundle *chunkstore.Bundle
	// MountPoint is the absolute mount point.
	MountPoint string
	// RunBase is a private path prefix for the service's sockets and files
	// (fusefs.RecordPath without ".json"): e.g. RunBase+".uffd.sock".
	RunBase string
	Logger  *log.Logger
	// Fail reports an error after Start that should end the daemon.
	Fail func(error)
}

var serviceMakers []func() Service

// registerService adds a service to every daemon. Call it from init.
func registerService(mk func() Service) { serviceMakers = append(serviceMakers, mk) }

// stopTimeout bounds each service's Stop.
const stopTimeout = 10 * time.Second

// startServices starts svcs in order; on an error it stops the ones
// already started (in reverse) and returns the error.
func startServices(ctx context.Context, env *ServiceEnv, svcs []Service) ([]Service, error) {
	for i, s := range svcs {
		if err := s.Start(ctx, env); err != nil {
			serr := stopServices(svcs[:i])
			return nil, errors.Join(fmt.Errorf("service %s: start: %w", s.Name(), err), serr)
		}
	}
	return svcs, nil
}

// stopServices stops svcs in reverse order, each within stopTimeout, and
// joins their errors.
func stopServices(svcs []Service) error {
	var errs []error
	for i := len(svcs) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		if err := svcs[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("service %s: stop: %w", svcs[i].Name(), err))
		}
		cancel()
	}
	return errors.Join(errs...)
}
