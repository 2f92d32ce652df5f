package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/spf13/cobra"
)

func init() {
	var (
		out, memory, kernel, initrd, state, config string
		disks                                      []string
		cpus, framePages                           int
		mem, cmdline, arch, store, parent          string
		asJSON                                     bool
	)
	cmd := &cobra.Command{
		Use:   "pack -o OUT [--memory F] [--kernel F] [--initrd F] [--disk NAME=F]... [--state F]",
		Short: "Pack images into a .smolmachine bundle",
		Long: `Pack reads the given images page by page, drops all-zero pages, dedups pages
by SHA-256 (within the pack, against --store and against --parent) and
compresses the rest into zstd frames. With --store the frames go to the store
and the bundle references them (a thin bundle). The bundle is written to a
hidden temporary file and appears at OUT only when complete.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("pack: -o OUT is required")
			}
			opts := chunkstore.PackOptions{FramePages: framePages}
			m := &opts.Manifest
			m.Config = format.Config{Arch: arch}
			if config != "" {
				b, err := os.ReadFile(config)
				if err != nil {
					return fmt.Errorf("pack: --config: %w", err)
				}
				if err := json.Unmarshal(b, &m.Config); err != nil {
					return fmt.Errorf("pack: --config %s: %w", config, err)
				}
			}
			if cmd.Flags().Changed("cpus") || m.Config.VCPUs == 0 {
				m.Config.VCPUs = cpus
			}
			if mem != "" {
				n, err := parseSize(mem)
				if err != nil {
					return fmt.Errorf("pack: --mem: %w", err)
				}
				m.Config.MemoryBytes = n
			}
			if cmdline != "" {
				m.Config.Cmdline = cmdline
			}
			add := func(name, path string) {
				if path != "" {
					opts.Inputs = append(opts.Inputs, chunkstore.PackInput{Name: name, Path: path})
				}
			}
			add(format.ArtifactKernel, kernel)
			add(format.ArtifactInitrd, initrd)
			add(format.ArtifactMemory, memory)
			for _, d := range disks {
				name, path, ok := strings.Cut(d, "=")
				if !ok || name == "" || path == "" {
					return fmt.Errorf("pack: --disk %q: want NAME=FILE", d)
				}
				add(format.DiskPrefix+name, path)
				m.Config.Devices = append(m.Config.Devices, format.Device{Kind: "virtio-blk", Name: name, Artifact: format.DiskPrefix + name})
			}
			if state != "" {
				add(format.ArtifactState, state)
				m.State = format.ArtifactState
			}
			if len(opts.Inputs) == 0 {
				return fmt.Errorf("pack: nothing to pack (give --memory, --kernel, --initrd, --disk or --state)")
			}
			if m.Config.MemoryBytes == 0 && memory != "" {
				if st, err := os.Stat(memory); err == nil {
					m.Config.MemoryBytes = st.Size()
				}
			}
			var total int64
			for _, in := range opts.Inputs {
				st, err := os.Stat(in.Path)
				if err != nil {
					return fmt.Errorf("pack: %s: %w", in.Name, err)
				}
				total += st.Size()
			}
			if store != "" {
				s, err := chunkstore.OpenDir(store)
				if err != nil {
					return err
				}
				opts.Store = s
			}
			if parent != "" {
				pb, err := chunkstore.Open(parent, chunkstore.Options{StoreDir: store})
				if err != nil {
					return fmt.Errorf("pack: --parent: %w", err)
				}
				defer pb.Close()
				opts.Parent = pb
			}
			bar := newProgressBar("pack", total)
			opts.Progress = bar.add
			res, err := chunkstore.Pack(cmd.Context(), out, opts)
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Bundle string `json:"bundle"`
					*chunkstore.PackResult
				}{out, res})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "packed %s (%s)\n", out, res.ManifestHex)
			fmt.Fprintf(w, "  logical  %s in %d artifact(s): %d zero pages, %d data pages\n",
				humanBytes(res.LogicalBytes), len(opts.Inputs), res.ZeroPages, res.DataPages)
			fmt.Fprintf(w, "  dedup    %d pages new, %d reused (%.1f%%)\n",
				res.NewPages, res.ReusedPages, pct(res.ReusedPages, res.DataPages))
			where := "in the bundle"
			if store != "" {
				where = "in store " + filepath.Clean(store)
			}
			fmt.Fprintf(w, "  stored   %s new in %d frames %s (%.2fx compression of new pages)",
				humanBytes(res.NewBytes), res.NewFrames, where, ratio(res.NewPages*format.PageSize, res.NewBytes))
			if res.CopiedFrames > 0 {
				fmt.Fprintf(w, ", %s copied from parent in %d frames", humanBytes(res.CopiedBytes), res.CopiedFrames)
			}
			fmt.Fprintf(w, "\n  file     %s, %d frames (%d external)\n", humanBytes(res.FileBytes), res.Frames, res.ExternalFrames)
			fmt.Fprintf(w, "  speed    %.0f MB/s (%.2f s)\n", res.MBPerSec, res.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "bundle to write")
	f.StringVar(&memory, "memory", "", "guest memory image")
	f.StringVar(&kernel, "kernel", "", "kernel image (bzImage or vmlinux)")
	f.StringVar(&initrd, "initrd", "", "initramfs")
	f.StringArrayVar(&disks, "disk", nil, "disk image as NAME=FILE (repeatable)")
	f.StringVar(&state, "state", "", "saved machine state blob")
	f.StringVar(&config, "config", "", "machine config JSON (format.Config: arch, vcpus, memory_bytes, cmdline, devices)")
	f.IntVar(&cpus, "cpus", 1, "vCPUs")
	f.StringVar(&mem, "mem", "", "guest RAM size (e.g. 512M); default: the memory image's size")
	f.StringVar(&cmdline, "cmdline", "", "kernel command line")
	f.StringVar(&arch, "arch", "x86_64", "guest architecture")
	f.StringVar(&store, "store", "", "chunk store directory: write a thin bundle, reuse its pages")
	f.StringVar(&parent, "parent", "", "bundle whose pages to reuse")
	f.IntVar(&framePages, "frame-pages", format.DefaultFramePages, "pages per compressed frame (1..1024)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	register(cmd)
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
