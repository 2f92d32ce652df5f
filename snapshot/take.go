package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/disk"
	"github.com/smolvm/smolvm/vmm/network"
)

// Machine is what Take needs of a running machine; *vmm.Machine has it.
type Machine interface {
	Pause(ctx context.Context) error
	Paused() bool
	Resume()
	Stop()
	SaveState() (*vmm.State, error)
	RAM() []vmm.RAMRegion
	Config() vmm.Config
	Disks() []vmm.DiskImage
}

// memoryHolder is a Machine that can keep its memory from being released
// (vmm.Machine.HoldMemory).
type memoryHolder interface {
	HoldMemory() (release func(), err error)
}

// Options say what Take writes.
type Options struct {
	// Output is the bundle's path; it appears there only when complete.
	Output string
	// Store, when set, is a directory store: pages it holds are
	// referenced, new frames go there (a thin bundle).
	Store string
	// Parent, when set, is the bundle the machine was restored from: its
	// pages are reused, so a snapshot of a clone stores what changed.
	Parent string
	// ParentDigest, when set, is the manifest digest the machine was
	// restored from. If the bundle at Parent has it (same memory), RAM
	// pages the clone never populated are read from the parent instead of
	// faulted in through its daemon.
	ParentDigest string
	// Stop stops the machine once the bundle is written (on an error it is
	// resumed instead).
	Stop bool
	// FramePages is pages per new frame (0: format.DefaultFramePages).
	FramePages int
	// PauseTimeout bounds the wait for every vCPU to stop (0: 10 s).
	PauseTimeout time.Duration
	// NoRecord skips recording the working set (RecordWorkingSet: one
	// lazy restore of the new bundle until its agent is ready). A failed
	// recording leaves the bundle valid, without a working set, and is
	// reported in Result.WorkingSetError.
	NoRecord bool
	// Record tunes the recording.
	Record RecordOptions
}

// Result reports a snapshot.
type Result struct {
	Output         string `json:"output"`
	ManifestDigest string `json:"manifest_digest"`
	MemBytes       int64  `json:"mem_bytes"`
	MemDataPages   int64  `json:"mem_data_pages"`
	// MemParentPages: RAM pages the clone never touched, taken from the
	// parent bundle rather than read (faulted in) from RAM.
	MemParentPages int64   `json:"mem_parent_pages,omitempty"`
	DiskDataPages  int64   `json:"disk_data_pages"`
	PausedSeconds  float64 `json:"paused_s"`
	Seconds        float64 `json:"seconds"`
	Stopped        bool    `json:"stopped"`
	// WorkingSetPages is the length of the recorded working set (0 when
	// not recorded).
	WorkingSetPages int64 `json:"working_set_pages"`
	// WorkingSetError says why no working set was recorded.
	WorkingSetError string                 `json:"working_set_error,omitempty"`
	RecordSeconds   float64                `json:"record_s,omitempty"`
	Pack            *chunkstore.PackResult `json:"pack"`
}

// Take writes a snapshot of m to opts.Output: it pauses every vCPU, saves
// the machine state (devices and virtio queues included), copies guest RAM
// and each disk (base and overlay merged) to temporary files beside the
// output, then resumes the machine (unless Stop) and packs kernel, initrd,
// memory, disks and state into one bundle, deduplicated against Store and
// Parent. A machine that was paused before stays paused.
func Take(ctx context.Context, m Machine, opts Options) (res *Result, err error) {
	start := time.Now()
	if opts.Output == "" {
		return nil, errors.New("snapshot: no output path")
	}
	cfg := m.Config()
	inputs, err := packInputs(cfg)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(opts.Output), ".snapshot-*")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer os.RemoveAll(tmp)

	var parent *chunkstore.Bundle
	if opts.Parent != "" {
		parent, err = chunkstore.Open(opts.Parent, chunkstore.Options{StoreDir: opts.Store})
		if err != nil {
			return nil, fmt.Errorf("snapshot: parent bundle: %w", err)
		}
		defer parent.Close()
	}
	var store *chunkstore.DirStore
	if opts.Store != "" {
		if store, err = chunkstore.OpenDir(opts.Store); err != nil {
			return nil, fmt.Errorf("snapshot: store: %w", err)
		}
	}

	// Paused from here until the images are copied (or for good, --stop).
	wasPaused := m.Paused()
	pt := opts.PauseTimeout
	if pt == 0 {
		pt = 10 * time.Second
	}
	pctx, cancel := context.WithTimeout(ctx, pt)
	err = m.Pause(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	pausedAt := time.Now()
	resumed := wasPaused
	resume := func() {
		if !resumed {
			m.Resume()
			resumed = true
		}
	}
	defer resume() // on every error path the machine runs on
	res = &Result{Output: opts.Output, MemBytes: cfg.MemBytes}
	// Keep RAM and disks open while they are read: a stop meanwhile waits.
	release := func() {}
	if h, ok := m.(memoryHolder); ok {
		if release, err = h.HoldMemory(); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
	}
	parentMem := parentMemory(parent, opts.ParentDigest, cfg.MemBytes)
	saved, untouched, err := capture(m, cfg, tmp, res, parent, parentMem != nil)
	release()
	if err != nil {
		return nil, err
	}
	if !opts.Stop {
		resume()
	}
	res.PausedSeconds = time.Since(pausedAt).Seconds()
	// The parent's image is immutable: its pages can be copied while the
	// guest runs on.
	if len(untouched) > 0 {
		if err := fillFromParent(filepath.Join(tmp, "memory"), untouched, parentMem); err != nil {
			return nil, err
		}
	}

	po := chunkstore.PackOptions{
		Manifest:   manifest(cfg, saved),
		Inputs:     append(inputs, packImages(tmp, cfg)...),
		Store:      store,
		Parent:     parent,
		FramePages: opts.FramePages,
	}
	pr, err := chunkstore.Pack(ctx, opts.Output, po)
	if err != nil {
		return nil, fmt.Errorf("snapshot: writing %s: %w", opts.Output, err)
	}
	res.Pack, res.ManifestDigest = pr, pr.ManifestHex
	if !opts.NoRecord {
		record(ctx, opts, res)
	}
	if opts.Stop {
		resumed = true // stopped paused: the guest never runs again
		m.Stop()
		res.Stopped = true
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// record restores the new bundle once to record its working set (the
// source, with --stop, waits paused meanwhile: stopping it first would end
// this process). The bundle is rewritten with a new manifest digest.
func record(ctx context.Context, opts Options, res *Result) {
	start := time.Now()
	ro := opts.Record
	if ro.StoreDir == "" {
		ro.StoreDir = opts.Store
	}
	ws, err := RecordWorkingSet(ctx, opts.Output, ro)
	res.RecordSeconds = time.Since(start).Seconds()
	if err != nil {
		res.WorkingSetError = err.Error()
		return
	}
	for _, r := range ws.Ranges {
		res.WorkingSetPages += r.Count
	}
	b, err := chunkstore.Open(opts.Output, chunkstore.Options{StoreDir: ro.StoreDir})
	if err != nil {
		res.WorkingSetError = fmt.Sprintf("reopening the rewritten bundle: %v", err)
		return
	}
	res.ManifestDigest = b.Format().ManifestDigest().String()
	b.Close()
}

// capture saves state, memory and disks of the paused machine into dir.
// It returns the image spans left for fillFromParent.
func capture(m Machine, cfg vmm.Config, dir string, res *Result, parent *chunkstore.Bundle, skipUntouched bool) (*Saved, []byteSpan, error) {
	st, err := m.SaveState()
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	if len(st.VCPUs) == 0 {
		return nil, nil, errors.New("snapshot: saved state has no vCPUs")
	}
	saved := &Saved{
		Machine: *st,
		Config:  savedConfig(cfg),
		CPU:     IdentityOf(st.VCPUs[0].CPUID, st.VCPUs[0].TSCKHz),
		Memory:  MemoryLayout(cfg.MemBytes),
		TakenAt: time.Now().UTC(),
	}
	if parent != nil {
		saved.Parent = parent.Format().ManifestDigest().String()
	}
	var regions [][]byte
	for _, r := range m.RAM() {
		regions = append(regions, r.Data)
	}
	mc, err := captureMemory(filepath.Join(dir, "memory"), regions, skipUntouched)
	if err != nil {
		return nil, nil, err
	}
	res.MemDataPages, res.MemParentPages = mc.dataPages, mc.parentPages
	for i, d := range m.Disks() {
		n, err := captureDisk(filepath.Join(dir, "disk-"+d.Name), d.Name, d.Disk, d.Disk.Size())
		if err != nil {
			return nil, nil, err
		}
		saved.Config.Disks[i].Size = d.Disk.Size()
		res.DiskDataPages += n
	}
	f, err := os.Create(filepath.Join(dir, "state"))
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	defer f.Close()
	if err := EncodeState(f, saved); err != nil {
		return nil, nil, err
	}
	if err := f.Close(); err != nil {
		return nil, nil, fmt.Errorf("snapshot: state: %w", err)
	}
	return saved, mc.parentRuns, nil
}

// parentMemory is the parent's memory image when the machine is known to
// have been restored from exactly that bundle (digest given and equal) and
// its size fits; nil otherwise (every RAM page is then read).
func parentMemory(parent *chunkstore.Bundle, digest string, memBytes int64) io.ReaderAt {
	if parent == nil || digest == "" || parent.Format().ManifestDigest().String() != digest {
		return nil
	}
	im, err := parent.Image(format.ArtifactMemory)
	if err != nil || im.Size() != memBytes {
		return nil
	}
	return im
}

// savedConfig is the restore-relevant part of cfg.
func savedConfig(cfg vmm.Config) Config {
	c := Config{CPUs: cfg.CPUs, MemBytes: cfg.MemBytes, Cmdline: cfg.Cmdline, Vsock: cfg.VsockPath != ""}
	for _, d := range cfg.Disks {
		c.Disks = append(c.Disks, Disk{Name: d.Name, ReadOnly: d.Mode == disk.ModeRO})
	}
	if n := cfg.Net; n != nil && n.Mode.Kind != "none" {
		c.Net = &Net{Mode: n.Mode.Kind, MAC: network.MACString(n.MAC)}
		if c.Net.Mode == "" {
			c.Net.Mode = "user"
		}
	}
	return c
}

// packInputs are the files pack reads straight from the machine's config;
// disk names must be valid artifact names.
func packInputs(cfg vmm.Config) ([]chunkstore.PackInput, error) {
	for _, d := range cfg.Disks {
		if !format.ValidArtifactName(format.DiskPrefix + d.Name) {
			return nil, fmt.Errorf("snapshot: disk name %q cannot name a bundle artifact (want 1-64 of [A-Za-z0-9._-])", d.Name)
		}
	}
	if cfg.Kernel == "" {
		return nil, errors.New("snapshot: the machine has no kernel path")
	}
	in := []chunkstore.PackInput{{Name: format.ArtifactKernel, Path: cfg.Kernel}}
	if cfg.Initrd != "" {
		in = append(in, chunkstore.PackInput{Name: format.ArtifactInitrd, Path: cfg.Initrd})
	}
	return in, nil
}

// packImages are the captured files in dir.
func packImages(dir string, cfg vmm.Config) []chunkstore.PackInput {
	in := []chunkstore.PackInput{{Name: format.ArtifactMemory, Path: filepath.Join(dir, "memory")}}
	for _, d := range cfg.Disks {
		in = append(in, chunkstore.PackInput{Name: format.DiskPrefix + d.Name, Path: filepath.Join(dir, "disk-"+d.Name)})
	}
	return append(in, chunkstore.PackInput{Name: format.ArtifactState, Path: filepath.Join(dir, "state")})
}

// manifest is the bundle's manifest (pack fills in the artifacts).
func manifest(cfg vmm.Config, s *Saved) format.Manifest {
	c := format.Config{Arch: "x86_64", VCPUs: cfg.CPUs, MemoryBytes: cfg.MemBytes, Cmdline: cfg.Cmdline}
	for _, d := range s.Config.Disks {
		c.Devices = append(c.Devices, format.Device{Kind: "virtio-blk", Name: d.Name, Artifact: format.DiskPrefix + d.Name, ReadOnly: d.ReadOnly})
	}
	if s.Config.Net != nil {
		c.Devices = append(c.Devices, format.Device{Kind: "virtio-net", Name: s.Config.Net.Mode})
	}
	if s.Config.Vsock {
		c.Devices = append(c.Devices, format.Device{Kind: "virtio-vsock"})
	}
	return format.Manifest{Format: format.ManifestFormat, Config: c, State: format.ArtifactState}
}

var (
	_ Machine      = (*vmm.Machine)(nil)
	_ memoryHolder = (*vmm.Machine)(nil)
)
