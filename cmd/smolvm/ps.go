package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smolvm/smolvm/vmm/control"
)

// psEntry is one VM in `smolvm ps --json`.
type psEntry struct {
	Name     string          `json:"name"`
	PID      int             `json:"pid"`
	State    string          `json:"state"`
	StateDir string          `json:"state_dir"`
	Status   *control.Status `json:"status,omitempty"`
}

func init() {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List running VMs",
		Long: `ps lists the VMs that have a state dir under $XDG_RUNTIME_DIR/smolvm (or
/run/smolvm; $SMOLVM_RUN_DIR overrides both). State dirs left by VMs that
died are removed (and reported on stderr).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPS(os.Stdout, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	register(cmd)
}

func runPS(w io.Writer, asJSON bool) error {
	root := control.DefaultRoot()
	ents, err := control.List(root)
	if err != nil {
		return err
	}
	out := []psEntry{}
	for _, e := range ents {
		if e.Liveness == control.Stale {
			if err := control.CleanStale(root, e.Name); err == nil {
				fmt.Fprintf(os.Stderr, "smolvm: removed the state dir of %s (process %d is gone)\n", e.Name, e.PID)
				continue
			}
		}
		p := psEntry{Name: e.Name, PID: e.PID, State: e.Liveness.String(), StateDir: e.Path}
		if e.Liveness == control.Live {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if st, err := control.NewClient(e.ControlSocket()).Status(ctx); err == nil {
				p.Status, p.State = &st, string(st.State)
			}
			cancel()
		}
		out = append(out, p)
	}
	if asJSON {
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tSTATE\tREADY\tUPTIME\tCPUS\tMEMORY\tFORWARDS")
	for _, p := range out {
		ready, uptime, cpus, mem, fwd := "-", "-", "-", "-", "-"
		if st := p.Status; st != nil {
			if st.Ready {
				ready = fmt.Sprintf("%.2fs", st.ReadySeconds)
			}
			uptime = time.Since(st.StartedAt).Round(time.Second).String()
			cpus, mem = fmt.Sprint(st.CPUs), humanBytes(st.MemBytes)
			if len(st.Forwards) > 0 {
				fwd = strings.Join(st.Forwards, ",")
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.PID, p.State, ready, uptime, cpus, mem, fwd)
	}
	return tw.Flush()
}
