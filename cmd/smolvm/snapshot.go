package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/snapshot"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/control"
)

func init() {
	var (
		out, store string
		stop       bool
		noRecord   bool
		asJSON     bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "snapshot NAME -o FILE [--stop] [--store DIR]",
		Short: "Save a running VM into a .smolmachine bundle",
		Long: `snapshot asks the VM named NAME (PUT /snapshot on its control socket) to save
itself: its process pauses every vCPU, saves vCPU, VM and device state (virtio
queues included), copies guest RAM and each disk (base and overlay merged),
resumes the guest, and packs kernel, initrd, memory, disks and state into FILE
(written to a temporary file, renamed when complete). Zero pages are not
stored; pages are deduplicated against --store and against the bundle the VM
was itself restored from, so a snapshot of a clone stores what changed.
With --stop the VM is stopped once FILE is written.

FILE holds the guest's RAM: whatever secrets the guest had in memory.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("snapshot: -o FILE is required")
			}
			req := control.SnapshotRequest{Output: out, Store: store, Stop: stop, NoRecord: noRecord}
			res, err := runSnapshot(cmd.Context(), args[0], req, timeout)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			printSnapshot(cmd, args[0], res)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "bundle to write")
	cmd.Flags().StringVar(&store, "store", "", "directory store: dedup against it and put new frames there (thin bundle)")
	cmd.Flags().BoolVar(&stop, "stop", false, "stop the VM once the bundle is written")
	cmd.Flags().BoolVar(&noRecord, "no-record", false, "do not record the working set (one lazy restore of the new bundle until its agent answers)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	register(cmd)
}

// runSnapshot asks the VM for a snapshot and, with stop, waits for its
// process to exit.
func runSnapshot(ctx context.Context, name string, req control.SnapshotRequest, timeout time.Duration) (*snapshot.Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	dir, err := control.Lookup(control.DefaultRoot(), name)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	out := req.Output
	if req.Output, err = filepath.Abs(req.Output); err != nil {
		return nil, err
	}
	if req.Store != "" {
		if req.Store, err = filepath.Abs(req.Store); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := new(snapshot.Result)
	if err := control.NewClient(dir.ControlSocket()).Snapshot(ctx, req, res); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", name, err)
	}
	for req.Stop {
		if _, err := control.Lookup(control.DefaultRoot(), name); errors.Is(err, control.ErrNotFound) || errors.Is(err, control.ErrNotRunning) {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("snapshot %s: written to %s, but the VM did not exit within %v", name, out, timeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return res, nil
}

func printSnapshot(cmd *cobra.Command, name string, r *snapshot.Result) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "snapshot of %s: %s\n", name, r.Output)
	fmt.Fprintf(w, "  manifest %s\n", r.ManifestDigest)
	if p := r.Pack; p != nil {
		fmt.Fprintf(w, "  RAM %s (%s in non-zero pages), bundle %s; new %s in %d frames, %d pages reused\n",
			humanBytes(r.MemBytes), humanBytes(r.MemDataPages*format.PageSize), humanBytes(p.FileBytes),
			humanBytes(p.NewBytes), p.NewFrames, p.ReusedPages)
	}
	if r.MemParentPages > 0 {
		fmt.Fprintf(w, "  %s of RAM the clone never touched taken from its parent bundle\n", humanBytes(r.MemParentPages*format.PageSize))
	}
	state := "resumed"
	if r.Stopped {
		state = "stopped"
	}
	switch {
	case r.WorkingSetError != "":
		fmt.Fprintf(w, "  no working set recorded: %s\n", r.WorkingSetError)
	case r.WorkingSetPages > 0:
		fmt.Fprintf(w, "  working set %s recorded in %.2f s\n", humanBytes(r.WorkingSetPages*format.PageSize), r.RecordSeconds)
	}
	fmt.Fprintf(w, "  paused %.2f s, total %.2f s; VM %s\n", r.PausedSeconds, r.Seconds, state)
	fmt.Fprintln(cmd.ErrOrStderr(), "smolvm: the bundle holds the guest's RAM: treat it like the machine's secrets")
}

// snapshotMachine is a VM as Take sees it; a stop through a snapshot is
// recorded like `smolvm stop` (the VM's process then exits 0).
type snapshotMachine struct {
	*vmm.Machine
	onStop func()
}

func (s snapshotMachine) Stop() {
	if s.onStop != nil {
		s.onStop()
	}
	s.Machine.Stop()
}

// snapshotHandler serves PUT /snapshot in the VM's own process; parent is
// the bundle the VM was restored from ("" for a booted VM), parentDigest
// the manifest digest it had then.
func snapshotHandler(m *vmm.Machine, parent, parentDigest string, onStop func()) control.SnapshotFunc {
	return func(ctx context.Context, req control.SnapshotRequest) (any, error) {
		return snapshot.Take(ctx, snapshotMachine{m, onStop}, snapshot.Options{
			Output: req.Output, Store: req.Store, Parent: parent, ParentDigest: parentDigest,
			Stop: req.Stop, NoRecord: req.NoRecord,
		})
	}
}
