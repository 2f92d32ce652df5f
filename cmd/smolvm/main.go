// Command smolvm packs, inspects, boots, snapshots and resumes Linux micro-VMs
// stored as .smolmachine bundles.
//
// Each subcommand lives in its own file and adds itself to the root command
// with register, so that no two subcommands edit the same file.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:   "smolvm",
	Short: "Run Linux micro-VMs from .smolmachine bundles, resumed instead of booted",
	Long: `smolvm runs Linux VMs from portable, self-contained .smolmachine bundles.
A bundle holds the VM config, kernel, initramfs, disks and saved machine state;
guest RAM and disks are stored as deduplicated, compressed, verified chunks.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// register adds subcommands to the root command. Call it from an init
// function in the file that defines the subcommand.
func register(cmds ...*cobra.Command) { rootCmd.AddCommand(cmds...) }

func main() {
	if err := rootCmd.Execute(); err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintln(os.Stderr, "smolvm:", err)
		}
		os.Exit(exitCode(err))
	}
}
