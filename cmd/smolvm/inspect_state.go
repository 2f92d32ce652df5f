package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/snapshot"
)

// secretsWarning is what inspect says of a bundle that holds guest RAM.
const secretsWarning = "this bundle holds a running guest's RAM: it may contain secrets (keys, tokens, passwords); share it only as you would the machine itself"

// snapshotInfo is what inspect shows of a bundle's saved state.
type snapshotInfo struct {
	TakenAt  time.Time       `json:"taken_at"`
	CPU      string          `json:"cpu"`
	TSCKHz   uint32          `json:"tsc_khz"`
	Features int             `json:"cpu_feature_words"`
	VCPUs    int             `json:"vcpus"`
	MemBytes int64           `json:"mem_bytes"`
	Disks    []snapshot.Disk `json:"disks,omitempty"`
	Net      *snapshot.Net   `json:"net,omitempty"`
	Vsock    bool            `json:"vsock"`
	Parent   string          `json:"parent,omitempty"`
	Devices  int             `json:"virtio_devices"`
	Error    string          `json:"error,omitempty"`
}

// inspectState decodes the state artifact of the bundle at path (its
// frames read and verified; a thin bundle's external ones are unreadable).
// A state that cannot be read is reported in Error, not as a failure.
func inspectState(path string, m *format.Manifest) *snapshotInfo {
	if m.State == "" {
		return nil
	}
	info := &snapshotInfo{}
	s, err := readState(path, m.State)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.TakenAt, info.TSCKHz, info.Parent = s.TakenAt, s.CPU.TSCKHz, s.Parent
	info.CPU = fmt.Sprintf("%s family %#x model %#x stepping %d", s.CPU.Vendor, s.CPU.Family, s.CPU.Model, s.CPU.Stepping)
	info.Features = len(s.CPU.Features)
	info.VCPUs, info.MemBytes = s.Config.CPUs, s.Config.MemBytes
	info.Disks, info.Net, info.Vsock = s.Config.Disks, s.Config.Net, s.Config.Vsock
	info.Devices = len(s.Machine.Virtio)
	return info
}

func readState(path, name string) (*snapshot.Saved, error) {
	b, err := chunkstore.Open(path, chunkstore.Options{CacheBytes: -1})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	im, err := b.Image(name)
	if err != nil {
		return nil, err
	}
	return snapshot.DecodeState(io.NewSectionReader(im, 0, im.Size()))
}

// printSnapshotInfo adds the saved state's lines to inspect's table.
func printSnapshotInfo(w *tabwriter.Writer, info *snapshotInfo) {
	if info == nil {
		return
	}
	if info.Error != "" {
		fmt.Fprintf(w, "snapshot\tstate unreadable: %s\n", info.Error)
	} else {
		fmt.Fprintf(w, "snapshot\ttaken %s, %d vCPU, %s RAM, %d virtio devices\n",
			info.TakenAt.Format(time.RFC3339), info.VCPUs, humanBytes(info.MemBytes), info.Devices)
		fmt.Fprintf(w, "cpu\t%s, TSC %d kHz, %d feature words (a host lacking one is refused)\n", info.CPU, info.TSCKHz, info.Features)
		for _, d := range info.Disks {
			fmt.Fprintf(w, "disk\t%s %s\n", d.Name, humanBytes(d.Size))
		}
		if info.Net != nil {
			fmt.Fprintf(w, "net\t%s (saved MAC %s; clones get a new one)\n", info.Net.Mode, info.Net.MAC)
		}
		if info.Parent != "" {
			fmt.Fprintf(w, "parent\t%s\n", info.Parent)
		}
	}
	fmt.Fprintf(w, "WARNING\t%s\n", secretsWarning)
}
