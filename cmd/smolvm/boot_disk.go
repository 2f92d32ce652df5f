package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/disk"
)

// diskFlagHelp documents --disk.
const diskFlagHelp = "virtio-blk disk NAME=PATH[,ro|,cow][,overlay=FILE] (repeatable; the first is /dev/vda). " +
	"cow never writes PATH: writes go to FILE (default: disk-NAME.overlay in the state dir of --name, removed with it)"

// parseDiskFlag parses one --disk value.
func parseDiskFlag(s string) (vmm.DiskConfig, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return vmm.DiskConfig{}, fmt.Errorf("--disk %q: want NAME=PATH[,ro|,cow][,overlay=FILE]", s)
	}
	parts := strings.Split(rest, ",")
	d := vmm.DiskConfig{Name: name, Path: parts[0], Mode: disk.ModeRW}
	modeSet := false
	for _, p := range parts[1:] {
		switch {
		case p == string(disk.ModeRO) || p == string(disk.ModeCOW) || p == string(disk.ModeRW):
			if modeSet {
				return vmm.DiskConfig{}, fmt.Errorf("--disk %q: more than one mode", s)
			}
			d.Mode, modeSet = disk.Mode(p), true
		case strings.HasPrefix(p, "overlay="):
			d.OverlayPath = strings.TrimPrefix(p, "overlay=")
		default:
			return vmm.DiskConfig{}, fmt.Errorf("--disk %q: unknown option %q (want ro, cow or overlay=FILE)", s, p)
		}
	}
	if d.OverlayPath != "" && d.Mode != disk.ModeCOW {
		return vmm.DiskConfig{}, fmt.Errorf("--disk %q: overlay= needs cow", s)
	}
	return d, nil
}

// parseDiskFlags parses every --disk and gives cow disks without an overlay
// one in stateDir ("" when the VM has no --name: then that is an error).
func parseDiskFlags(vals []string, stateDir string) ([]vmm.DiskConfig, error) {
	var out []vmm.DiskConfig
	for _, v := range vals {
		d, err := parseDiskFlag(v)
		if err != nil {
			return nil, err
		}
		if d.Mode == disk.ModeCOW && d.OverlayPath == "" {
			if stateDir == "" {
				return nil, fmt.Errorf("--disk %q: cow needs overlay=FILE or --name (for a state dir to keep the overlay in)", v)
			}
			d.OverlayPath = filepath.Join(stateDir, "disk-"+d.Name+".overlay")
		}
		out = append(out, d)
	}
	return out, nil
}
