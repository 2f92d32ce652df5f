package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/arch/amd64"
)

// The state artifact (docs/SNAPSHOT.md):
//
//	offset 0   magic "SMOLSTAT"
//	8          u16 major version (1), u16 minor version (0), u32 flags (0)
//	16         u64 payload length (at most MaxPayload)
//	24         [32] SHA-256 of the payload
//	56         payload: JSON of Saved
//
// All integers little-endian. Nothing may follow the payload.
const (
	stateMagic = "SMOLSTAT"
	headerSize = 56
	stateMajor = 1
	stateMinor = 0
	// MaxPayload bounds the JSON payload a decoder accepts.
	MaxPayload = 64 << 20
)

// Errors DecodeState wraps, for errors.Is.
var (
	// ErrBadMagic: the bytes are not a smolvm state artifact.
	ErrBadMagic = errors.New("snapshot: not a smolvm state artifact (bad magic)")
	// ErrVersion: a state version this build does not read.
	ErrVersion = errors.New("snapshot: unsupported state version")
	// ErrCorrupt: the checksum or the payload does not check out.
	ErrCorrupt = errors.New("snapshot: corrupt state")
	// ErrHostMismatch: this host cannot run the saved guest (CheckHost).
	ErrHostMismatch = errors.New("snapshot: host cannot restore this state")
)

// Saved is what the state artifact holds: everything but guest memory and
// disks that a restore needs.
type Saved struct {
	// Machine is the paused machine's state (vCPUs, VM, devices).
	Machine vmm.State
	// Config is the machine's shape; a restore builds the same.
	Config Config
	// CPU is what the guest saw of the processor it was taken on.
	CPU CPUIdentity
	// Memory says where each guest RAM region lies in the `memory`
	// artifact (MemoryLayout of Config.MemBytes).
	Memory []MemoryRegion
	// TakenAt is the host time of the snapshot.
	TakenAt time.Time
	// Parent is the manifest digest of the bundle the machine was itself
	// restored from ("" for a booted machine).
	Parent string `json:",omitempty"`
}

// Config is the shape of the saved machine.
type Config struct {
	CPUs     int
	MemBytes int64
	Cmdline  string
	Disks    []Disk `json:",omitempty"`
	// Net is the network mode ("" for none, user, tap) and MAC the guest
	// had; a clone gets a new MAC.
	Net *Net `json:",omitempty"`
	// Vsock: the machine had a vsock device (the agent's transport).
	Vsock bool
}

// Disk is one virtio-blk disk, in guest order; its content is the bundle's
// artifact disk/NAME.
type Disk struct {
	Name     string
	Size     int64
	ReadOnly bool `json:",omitempty"`
}

// Net is the saved guest network interface.
type Net struct {
	Mode string
	MAC  string
}

// MemoryRegion is one guest RAM region: guest physical address, offset in
// the memory artifact, size in bytes.
type MemoryRegion struct {
	GPA    uint64
	Offset uint64
	Size   uint64
}

// MemoryLayout is the memory artifact's layout for memBytes of guest RAM:
// the regions of amd64.RAMRegions back to back, so the artifact is exactly
// memBytes long.
func MemoryLayout(memBytes int64) []MemoryRegion {
	var out []MemoryRegion
	var off uint64
	for _, r := range amd64.RAMRegions(uint64(memBytes)) {
		out = append(out, MemoryRegion{GPA: r.GuestAddr, Offset: off, Size: r.Size})
		off += r.Size
	}
	return out
}

// EncodeState writes s as a state artifact.
func EncodeState(w io.Writer, s *Saved) error {
	payload, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("snapshot: encode state: %w", err)
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("snapshot: encode state: %d bytes, more than %d", len(payload), MaxPayload)
	}
	var h [headerSize]byte
	copy(h[:], stateMagic)
	binary.LittleEndian.PutUint16(h[8:], stateMajor)
	binary.LittleEndian.PutUint16(h[10:], stateMinor)
	binary.LittleEndian.PutUint64(h[16:], uint64(len(payload)))
	sum := sha256.Sum256(payload)
	copy(h[24:], sum[:])
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("snapshot: write state: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("snapshot: write state: %w", err)
	}
	return nil
}

// DecodeState reads a state artifact, refusing a wrong magic, an unknown
// version, a bad checksum, trailing bytes or a payload that does not
// describe a machine.
func DecodeState(r io.Reader) (*Saved, error) {
	var h [headerSize]byte
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if n >= len(stateMagic) && string(h[:len(stateMagic)]) != stateMagic {
			return nil, fmt.Errorf("%w: starts with %q", ErrBadMagic, h[:len(stateMagic)])
		}
		return nil, fmt.Errorf("%w: header: %d of %d bytes: %v", ErrCorrupt, n, headerSize, err)
	}
	if string(h[:8]) != stateMagic {
		return nil, fmt.Errorf("%w: starts with %q, want %q", ErrBadMagic, h[:8], stateMagic)
	}
	major, minor := binary.LittleEndian.Uint16(h[8:]), binary.LittleEndian.Uint16(h[10:])
	if major != stateMajor {
		return nil, fmt.Errorf("%w: %d.%d (this build reads %d.x)", ErrVersion, major, minor, stateMajor)
	}
	if flags := binary.LittleEndian.Uint32(h[12:]); flags != 0 {
		return nil, fmt.Errorf("%w: flags %#x at offset 12, want 0", ErrCorrupt, flags)
	}
	n := binary.LittleEndian.Uint64(h[16:])
	if n > MaxPayload {
		return nil, fmt.Errorf("%w: payload length %d at offset 16 exceeds %d", ErrCorrupt, n, MaxPayload)
	}
	payload, err := io.ReadAll(io.LimitReader(r, int64(n)+1))
	if err != nil {
		return nil, fmt.Errorf("snapshot: read state: %w", err)
	}
	switch {
	case uint64(len(payload)) < n:
		return nil, fmt.Errorf("%w: payload truncated: %d of %d bytes", ErrCorrupt, len(payload), n)
	case uint64(len(payload)) > n:
		return nil, fmt.Errorf("%w: bytes after the %d-byte payload", ErrCorrupt, n)
	}
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], h[24:56]) {
		return nil, fmt.Errorf("%w: payload sha256:%x, header says sha256:%x", ErrCorrupt, got, h[24:56])
	}
	s := new(Saved)
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrCorrupt, err)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// check refuses a Saved that cannot describe a machine.
func (s *Saved) check() error {
	c := s.Config
	switch {
	case c.CPUs < 1 || c.CPUs > amd64.MaxCPUs:
		return fmt.Errorf("%w: %d vCPUs (want 1..%d)", ErrCorrupt, c.CPUs, amd64.MaxCPUs)
	case c.MemBytes < vmm.MinMemBytes || c.MemBytes%vmm.MemAlign != 0:
		return fmt.Errorf("%w: memory size %d", ErrCorrupt, c.MemBytes)
	case len(s.Machine.VCPUs) != c.CPUs:
		return fmt.Errorf("%w: %d saved vCPUs for a %d-vCPU machine", ErrCorrupt, len(s.Machine.VCPUs), c.CPUs)
	}
	want := MemoryLayout(c.MemBytes)
	if len(s.Memory) != len(want) {
		return fmt.Errorf("%w: %d memory regions, want %d for %d bytes", ErrCorrupt, len(s.Memory), len(want), c.MemBytes)
	}
	for i := range want {
		if s.Memory[i] != want[i] {
			return fmt.Errorf("%w: memory region %d is %+v, want %+v", ErrCorrupt, i, s.Memory[i], want[i])
		}
	}
	seen := map[string]bool{}
	for i, d := range c.Disks {
		if d.Name == "" || seen[d.Name] || d.Size < 0 {
			return fmt.Errorf("%w: disk %d (%q, %d bytes)", ErrCorrupt, i, d.Name, d.Size)
		}
		seen[d.Name] = true
	}
	return nil
}
