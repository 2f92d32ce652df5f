package main

import (
	"errors"
	"fmt"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/spf13/cobra"
)

// verifyFailure is one bad frame in `verify --json`.
type verifyFailure struct {
	Artifact string `json:"artifact"`
	Offset   int64  `json:"offset"`
	Frame    int    `json:"frame"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Error    string `json:"error"`
}

func init() {
	var (
		store  string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "verify BUNDLE [--store DIR]",
		Short: "Read every frame of a bundle and check every page and frame digest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := chunkstore.Open(args[0], chunkstore.Options{StoreDir: store, CacheBytes: -1})
			if err != nil {
				return err
			}
			defer b.Close()
			s := b.Format().Stats()
			bar := newProgressBar("verify", s.FrameSlots*4096)
			res, verr := b.Verify(cmd.Context(), bar.add)
			bar.done(verr == nil)
			var fails []verifyFailure
			for _, e := range res.Failures {
				vf := verifyFailure{Error: e.Error(), Frame: -1, Offset: -1}
				var ce *chunkstore.CorruptError
				if errors.As(e, &ce) {
					vf.Artifact, vf.Offset, vf.Frame = ce.Artifact, ce.Offset, ce.Frame
					if exp, act, ok := ce.Digests(); ok {
						vf.Expected = exp.String()
						var zero [32]byte
						if act != zero {
							vf.Actual = act.String()
						}
					}
				}
				fails = append(fails, vf)
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), struct {
					Bundle string `json:"bundle"`
					OK     bool   `json:"ok"`
					chunkstore.VerifyResult
					MBPerSec float64         `json:"mb_per_s"`
					Failed   []verifyFailure `json:"failures,omitempty"`
				}{args[0], verr == nil, res, mbps(res.Pages*4096, res.Seconds), fails}); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				for _, f := range fails {
					fmt.Fprintf(w, "BAD %s\n", f.Error)
				}
				status := "ok"
				if verr != nil {
					status = fmt.Sprintf("FAILED (%d of %d frames bad)", res.FailedCount, res.Frames)
				}
				fmt.Fprintf(w, "verify %s: %s: %d frames, %d pages, %s compressed, %.0f MB/s (%.2f s)\n",
					args[0], status, res.Frames, res.Pages, humanBytes(res.RawBytes), mbps(res.Pages*4096, res.Seconds), res.Seconds)
			}
			if verr != nil {
				return &exitError{code: 1, err: verr}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "chunk store directory holding a thin bundle's frames")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	register(cmd)
}
