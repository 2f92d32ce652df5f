package main

import (
	"encoding/json"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// writeJSON prints v as indented JSON: the form every reporting subcommand
// gives with --json.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether f is a terminal; progress bars are drawn only
// when stderr is one.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
