package main

import (
	"fmt"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/spf13/cobra"
)

func init() {
	var (
		out, store string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "extract BUNDLE ARTIFACT -o OUT",
		Short: "Write one artifact (memory, kernel, initrd, state, disk/NAME) out bit-identical, zero ranges as holes",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("extract: -o OUT is required")
			}
			start := time.Now()
			b, err := chunkstore.Open(args[0], chunkstore.Options{StoreDir: store, CacheBytes: 64 << 20})
			if err != nil {
				return err
			}
			defer b.Close()
			im, err := b.Image(args[1])
			if err != nil {
				return err
			}
			f, err := chunkstore.CreateAtomic(out)
			if err != nil {
				return fmt.Errorf("extract: %w", err)
			}
			defer f.Abort()
			// Sizing the file first leaves every unwritten (zero) range a hole.
			if err := f.Truncate(im.Size()); err != nil {
				return fmt.Errorf("extract: %s: %w", out, err)
			}
			var data int64
			for _, e := range im.Extents() {
				data += int64(e.Count) * 4096
			}
			bar := newProgressBar("extract", min(data, im.Size()))
			err = b.Extract(cmd.Context(), args[1], f, bar.add)
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if err := f.Commit(); err != nil {
				return fmt.Errorf("extract: %w", err)
			}
			secs := time.Since(start).Seconds()
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{
					"bundle": args[0], "artifact": args[1], "output": out, "size": im.Size(),
					"data_bytes": min(data, im.Size()), "seconds": secs, "mb_per_s": mbps(im.Size(), secs),
				})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "extracted %s from %s to %s: %s (%s data, rest holes), %.0f MB/s\n",
				args[1], args[0], out, humanBytes(im.Size()), humanBytes(min(data, im.Size())), mbps(im.Size(), secs))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write")
	cmd.Flags().StringVar(&store, "store", "", "chunk store directory holding a thin bundle's frames")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	register(cmd)
}
