package main

import (
	"fmt"

	"github.com/smolvm/smolvm/registry"
	"github.com/spf13/cobra"
)

func init() {
	var (
		opts     registry.PushOptions
		packSize string
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "push [--insecure] BUNDLE REGISTRY/REPO:TAG",
		Short: "Upload a bundle to an OCI registry (only the packs the registry lacks)",
		Long: `Push uploads BUNDLE as an OCI artifact (artifactType ` + registry.ArtifactType + `):
the config holds the bundle's TOC, manifest and a frame index; the layers are
packs of frames cut in frame-table order. Frames already in the repository
(under any of its tags) or in a --base artifact are referenced, not uploaded;
blobs the registry has are skipped (HEAD first); packs of a --base in another
repository are mounted across repositories. Credentials come from the docker
config and its credential helpers. TLS unless --insecure (plain HTTP).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if packSize != "" {
				n, err := parseSize(packSize)
				if err != nil {
					return fmt.Errorf("push: --pack-size: %w", err)
				}
				opts.PackSize = n
			}
			var bar *progressBar
			opts.Total = func(n int64) { bar = newProgressBar("push", n) }
			opts.Progress = func(n int64) { bar.add(n) }
			res, err := registry.Push(cmd.Context(), args[0], args[1], opts)
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s to %s (%s): %d frames, %d reused; %d packs, %d new, %d uploaded (%s, %.0f MB/s), %d mounted; %.2f s\n",
				args[0], res.Reference, res.Digest, res.Frames, res.ReusedFrames, res.Packs, res.NewPacks, res.UploadedPacks,
				humanBytes(res.UploadedBytes), res.UploadMBPerSec, res.MountedPacks, res.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&opts.Insecure, "insecure", false, "plain HTTP (a local registry)")
	f.StringVar(&opts.StoreDir, "store", "", "chunk store directory holding a thin bundle's frames")
	f.StringVar(&packSize, "pack-size", "32MiB", "cut packs at this size")
	f.StringSliceVar(&opts.Bases, "base", nil, "earlier artifact (REGISTRY/REPO:TAG, same registry) whose packs may be reused")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	register(cmd)
}
