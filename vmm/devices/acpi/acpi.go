package acpi

import (
	"errors"
	"fmt"
	"sync"

	"github.com/smolvm/smolvm/vmm/devices"
)

// Register bits (ACPI 6.x, hardware-reduced sleep control and status).
const (
	SleepTypeShift = 2
	SleepTypeMask  = 0x1c // SLP_TYP, bits 2-4
	SleepEnable    = 0x20 // SLP_EN, bit 5
	WakeStatus     = 0x80 // WAK_STS, bit 7
)

// Default values matching the FADT and DSDT the arch package writes.
const (
	DefaultSleepControlPort = 0x600
	DefaultSleepStatusPort  = 0x601
	DefaultResetPort        = 0x602
	DefaultResetValue       = 0x01
	DefaultS5SleepType      = 5
)

// ErrBadConfig is returned (wrapped) by New for an unusable Config.
var ErrBadConfig = errors.New("acpi: invalid configuration")

// Config places the registers and names the actions.
type Config struct {
	SleepControlPort, SleepStatusPort, ResetPort uint16
	ResetValue                                   uint8
	S5SleepType                                  uint8  // SLP_TYP of \_S5 (0-7)
	PowerOff                                     func() // S5 entered; must not block
	Reset                                        func() // reset value written; must not block
}

// DefaultConfig returns the fixed smolvm layout with the given callbacks.
func DefaultConfig(powerOff, reset func()) Config {
	return Config{
		SleepControlPort: DefaultSleepControlPort,
		SleepStatusPort:  DefaultSleepStatusPort,
		ResetPort:        DefaultResetPort,
		ResetValue:       DefaultResetValue,
		S5SleepType:      DefaultS5SleepType,
		PowerOff:         powerOff,
		Reset:            reset,
	}
}

// Stats counts requests the device saw.
type Stats struct {
	PowerOffs, Resets uint64
	// UnsupportedSleeps counts SLP_EN writes with a sleep type other than S5
	// (S1-S4 are not implemented; the write is ignored).
	UnsupportedSleeps uint64
	LastSleepType     uint8
}

// Device is the ACPI fixed hardware. It is a devices.PortDevice.
type Device struct {
	cfg Config

	mu           sync.Mutex
	sleepControl uint8
	sleepStatus  uint8
	stats        Stats
}

// New checks cfg and returns the device.
func New(cfg Config) (*Device, error) {
	p := []uint16{cfg.SleepControlPort, cfg.SleepStatusPort, cfg.ResetPort}
	if p[0] == p[1] || p[0] == p[2] || p[1] == p[2] {
		return nil, fmt.Errorf("%w: ports %#x, %#x, %#x must differ", ErrBadConfig, p[0], p[1], p[2])
	}
	if cfg.S5SleepType > 7 {
		return nil, fmt.Errorf("%w: S5 sleep type %d does not fit SLP_TYP (0-7)", ErrBadConfig, cfg.S5SleepType)
	}
	if cfg.PowerOff == nil || cfg.Reset == nil {
		return nil, fmt.Errorf("%w: PowerOff and Reset callbacks are required", ErrBadConfig)
	}
	return &Device{cfg: cfg}, nil
}

// Register claims the three one-byte registers on b.
func (d *Device) Register(b *devices.Bus) error {
	for _, p := range []uint16{d.cfg.SleepControlPort, d.cfg.SleepStatusPort, d.cfg.ResetPort} {
		if err := b.RegisterPort(p, 1, d); err != nil {
			return fmt.Errorf("acpi: port %#x: %w", p, err)
		}
	}
	return nil
}

// PortIn reads a register. The reset register reads as zero.
func (d *Device) PortIn(port uint16, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(data)
	if len(data) == 0 {
		return
	}
	switch port {
	case d.cfg.SleepControlPort:
		data[0] = d.sleepControl &^ SleepEnable // SLP_EN is write-only
	case d.cfg.SleepStatusPort:
		data[0] = d.sleepStatus
	}
}

// PortOut writes a register, calling PowerOff or Reset when asked. Only the
// first byte of a wider access counts: the registers are one byte wide.
func (d *Device) PortOut(port uint16, data []byte) {
	if len(data) == 0 {
		return
	}
	v := data[0]
	var action func()
	d.mu.Lock()
	switch port {
	case d.cfg.SleepControlPort:
		d.sleepControl = v & SleepTypeMask
		if v&SleepEnable != 0 {
			typ := (v & SleepTypeMask) >> SleepTypeShift
			d.stats.LastSleepType = typ
			if typ == d.cfg.S5SleepType {
				d.stats.PowerOffs++
				action = d.cfg.PowerOff
			} else {
				d.stats.UnsupportedSleeps++
			}
		}
	case d.cfg.SleepStatusPort:
		d.sleepStatus &^= v & WakeStatus // write one to clear
	case d.cfg.ResetPort:
		if v == d.cfg.ResetValue {
			d.stats.Resets++
			action = d.cfg.Reset
		}
	}
	d.mu.Unlock()
	if action != nil {
		action()
	}
}

// Stats returns the request counters.
func (d *Device) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// State is the device's saved registers.
type State struct {
	SleepControl uint8 // SLP_TYP as last written (SLP_EN is not kept)
	SleepStatus  uint8 // WAK_STS
}

// Save returns the registers.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{SleepControl: d.sleepControl &^ SleepEnable, SleepStatus: d.sleepStatus}
}

// Restore sets the registers; bits no register holds are refused.
func (d *Device) Restore(st State) error {
	if st.SleepControl&^SleepTypeMask != 0 || st.SleepStatus&^WakeStatus != 0 {
		return fmt.Errorf("acpi: invalid state: sleep control %#x (allowed %#x), sleep status %#x (allowed %#x)",
			st.SleepControl, SleepTypeMask, st.SleepStatus, WakeStatus)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sleepControl, d.sleepStatus = st.SleepControl, st.SleepStatus
	return nil
}
