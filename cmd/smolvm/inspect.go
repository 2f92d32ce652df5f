package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/smolvm/smolvm/format"
	"github.com/spf13/cobra"
)

func init() {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect [--json] BUNDLE",
		Short: "Show a bundle's config, artifacts and storage figures (reads no frame data but a snapshot's state)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			r, err := format.Open(f, st.Size())
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			m := r.Manifest()
			snap := inspectState(args[0], m) // inspect_state.go: saved state, if any
			var warning string
			if snap != nil || m.Artifact(format.ArtifactMemory) != nil {
				warning = secretsWarning
			}
			s := r.Stats()
			t := r.Trailer()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Bundle         string        `json:"bundle"`
					Version        string        `json:"format_version"`
					ManifestDigest string        `json:"manifest_digest"`
					Config         format.Config `json:"config"`
					State          string        `json:"state,omitempty"`
					WorkingSet     int           `json:"working_set_ranges"`
					Stats          format.Stats  `json:"stats"`
					Snapshot       *snapshotInfo `json:"snapshot,omitempty"`
					Warning        string        `json:"warning,omitempty"`
				}{args[0], fmt.Sprintf("%d.%d", t.Major, t.Minor), r.ManifestDigest().String(), m.Config, m.State, len(m.WorkingSet), s,
					snap, warning})
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "bundle\t%s (format %d.%d, %s)\n", args[0], t.Major, t.Minor, humanBytes(s.FileBytes))
			fmt.Fprintf(w, "manifest\t%s\n", r.ManifestDigest())
			c := m.Config
			fmt.Fprintf(w, "config\t%s, %d vCPU, %s RAM\n", c.Arch, c.VCPUs, humanBytes(c.MemoryBytes))
			if c.Cmdline != "" {
				fmt.Fprintf(w, "cmdline\t%s\n", c.Cmdline)
			}
			for _, d := range c.Devices {
				fmt.Fprintf(w, "device\t%s %s %s\n", d.Kind, d.Name, d.Artifact)
			}
			if m.State != "" {
				fmt.Fprintf(w, "state\t%s\n", m.State)
			}
			printSnapshotInfo(w, snap)
			if snap == nil && warning != "" {
				fmt.Fprintf(w, "WARNING\t%s\n", warning)
			}
			fmt.Fprintln(w)
			fmt.Fprintln(w, "ARTIFACT\tSIZE\tZERO\tDATA\tPAGES\tEXTENTS\tFRAMES")
			for _, a := range s.Artifacts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\n", a.Name, humanBytes(a.Size),
					humanBytes(a.ZeroPages*format.PageSize), humanBytes(a.DataPages*format.PageSize), a.Pages, a.Extents, a.Frames)
			}
			fmt.Fprintln(w)
			fmt.Fprintf(w, "logical\t%s\n", humanBytes(s.LogicalBytes))
			fmt.Fprintf(w, "zero\t%s (not stored)\n", humanBytes(s.ZeroBytes))
			fmt.Fprintf(w, "data\t%s in %d pages, %d unique (%s), dedup %.2fx\n", humanBytes(s.DataPages*format.PageSize),
				s.DataPages, s.UniquePages, humanBytes(s.UniquePages*format.PageSize), s.DedupRatio)
			fmt.Fprintf(w, "frames\t%d (%d external), %d page slots\n", s.Frames, s.ExternalFrames, s.FrameSlots)
			fmt.Fprintf(w, "stored\t%s in the file, %s external, compression %.2fx\n",
				humanBytes(s.StoredBytes), humanBytes(s.ExternalBytes), s.CompressionRatio)
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	register(cmd)
}
