package network

import (
	"errors"
	"fmt"
	"net"
)

// BindForwards checks fs and binds each TCP forward's host address, in the
// order of fs; each UDP forward's address is bound and released again at
// once (the virtual network binds it itself), so that a port in use is
// reported here (ErrPortInUse, ErrBadSpec), before a VM starts. The caller
// owns the listeners; on error none is left open.
func BindForwards(fs []PortForward) (_ []net.Listener, err error) {
	if err := CheckForwards(fs); err != nil {
		return nil, err
	}
	var lns []net.Listener
	defer func() {
		if err != nil {
			CloseListeners(lns)
			lns = nil
		}
	}()
	for _, f := range fs {
		switch f.Proto {
		case TCP:
			ln, err := net.Listen("tcp", f.HostAddr())
			if err != nil {
				return nil, fmt.Errorf("%w: -p %s: %w", ErrPortInUse, f, err)
			}
			lns = append(lns, ln)
		case UDP:
			pc, err := net.ListenPacket("udp", f.HostAddr())
			if err != nil {
				return nil, fmt.Errorf("%w: -p %s: %w", ErrPortInUse, f, err)
			}
			pc.Close()
		}
	}
	return lns, nil
}

// CloseListeners closes each listener and returns their errors joined.
func CloseListeners(lns []net.Listener) error {
	var errs []error
	for _, ln := range lns {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
