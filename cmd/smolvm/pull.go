package main

import (
	"fmt"

	"github.com/smolvm/smolvm/registry"
	"github.com/spf13/cobra"
)

func init() {
	var (
		opts   registry.PullOptions
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "pull [--insecure] REGISTRY/REPO:TAG -o FILE",
		Short: "Download a bundle from an OCI registry, every byte verified",
		Long: `Pull fetches the artifact's config, then its packs (whole packs into the shared
cache, $XDG_CACHE_HOME/smolvm, resumed after an interruption; single frames by
range request from packs it needs little of), checks every pack against its
digest and every frame against its page digests, and writes a self-contained
bundle that appears at FILE only when complete: the very file that was pushed.
A tampered blob is refused, naming it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("pull: -o FILE is required")
			}
			var bar *progressBar
			opts.Total = func(n int64) { bar = newProgressBar("pull", n) }
			opts.Progress = func(n int64) { bar.add(n) }
			res, err := registry.Pull(cmd.Context(), args[0], out, opts)
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s) to %s: %s; %d packs (%d cached, %d fetched), %d frames by range, %s over the network (%.0f MB/s); %.2f s\n",
				res.Reference, res.Digest, out, humanBytes(res.BundleBytes), res.Packs, res.CachedPacks, res.FetchedPacks,
				res.RangeFrames, humanBytes(res.Net.Bytes), res.NetMBPerSec, res.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "bundle file to write")
	f.BoolVar(&opts.Insecure, "insecure", false, "plain HTTP (a local registry)")
	f.StringVar(&opts.CacheDir, "cache", "", "shared cache directory (default $XDG_CACHE_HOME/smolvm)")
	f.IntVar(&opts.Workers, "jobs", 4, "packs downloaded in parallel")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	register(cmd)
}
