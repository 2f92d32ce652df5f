package acpi

import (
	"errors"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices"
	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

type counts struct{ off, reset int }

func newDevice(t *testing.T) (*Device, *counts, *devices.Bus) {
	t.Helper()
	c := &counts{}
	d, err := New(DefaultConfig(func() { c.off++ }, func() { c.reset++ }))
	if err != nil {
		t.Fatal(err)
	}
	bus := devices.NewBus()
	if err := d.Register(bus); err != nil {
		t.Fatal(err)
	}
	return d, c, bus
}

func TestSleepAndReset(t *testing.T) {
	tests := []struct {
		name      string
		port      uint16
		value     uint8
		off, rst  int
		unsupport uint64
	}{
		{"S5 with SLP_EN (Linux poweroff)", DefaultSleepControlPort, 5<<SleepTypeShift | SleepEnable, 1, 0, 0},
		{"S5 type without SLP_EN", DefaultSleepControlPort, 5 << SleepTypeShift, 0, 0, 0},
		{"S3 with SLP_EN", DefaultSleepControlPort, 3<<SleepTypeShift | SleepEnable, 0, 0, 1},
		{"S0 with SLP_EN", DefaultSleepControlPort, SleepEnable, 0, 0, 1},
		{"reset value", DefaultResetPort, DefaultResetValue, 0, 1, 0},
		{"other reset value", DefaultResetPort, 0x06, 0, 0, 0},
		{"status write", DefaultSleepStatusPort, 0xff, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c, bus := newDevice(t)
			dt.Out8(bus, tt.port, tt.value)
			if c.off != tt.off || c.reset != tt.rst {
				t.Fatalf("poweroffs %d resets %d, want %d %d", c.off, c.reset, tt.off, tt.rst)
			}
			if st := d.Stats(); st.UnsupportedSleeps != tt.unsupport || st.PowerOffs != uint64(tt.off) || st.Resets != uint64(tt.rst) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestLinuxHardwareReducedPoweroff replays acpi_hw_extended_sleep: clear
// WAK_STS, then write SLP_TYP|SLP_EN as one byte.
func TestLinuxHardwareReducedPoweroff(t *testing.T) {
	d, c, bus := newDevice(t)
	if err := d.Restore(State{SleepStatus: WakeStatus}); err != nil {
		t.Fatal(err)
	}
	if v := dt.In8(bus, DefaultSleepStatusPort); v != WakeStatus {
		t.Fatalf("sleep status = %#x, want WAK_STS", v)
	}
	dt.Out8(bus, DefaultSleepStatusPort, WakeStatus)
	if v := dt.In8(bus, DefaultSleepStatusPort); v != 0 {
		t.Fatalf("WAK_STS not cleared by writing one: %#x", v)
	}
	dt.Out8(bus, DefaultSleepControlPort, DefaultS5SleepType<<SleepTypeShift|SleepEnable)
	if c.off != 1 {
		t.Fatal("no poweroff")
	}
	if v := dt.In8(bus, DefaultSleepControlPort); v != DefaultS5SleepType<<SleepTypeShift {
		t.Fatalf("sleep control reads %#x, want SLP_TYP only (SLP_EN is write-only)", v)
	}
	if v := dt.In8(bus, DefaultResetPort); v != 0 {
		t.Fatalf("reset register reads %#x", v)
	}
}

func TestNewRejects(t *testing.T) {
	nop := func() {}
	base := DefaultConfig(nop, nop)
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"same ports", func(c *Config) { c.SleepStatusPort = c.SleepControlPort }},
		{"reset on status", func(c *Config) { c.ResetPort = c.SleepStatusPort }},
		{"sleep type too wide", func(c *Config) { c.S5SleepType = 8 }},
		{"no poweroff", func(c *Config) { c.PowerOff = nil }},
		{"no reset", func(c *Config) { c.Reset = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			if _, err := New(cfg); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("err = %v, want ErrBadConfig", err)
			}
		})
	}
}

func TestSaveRestore(t *testing.T) {
	a, _, bus := newDevice(t)
	dt.Out8(bus, DefaultSleepControlPort, 3<<SleepTypeShift)
	if err := a.Restore(State{SleepControl: 3 << SleepTypeShift, SleepStatus: WakeStatus}); err != nil {
		t.Fatal(err)
	}
	saved := a.Save()
	b, _, bus2 := newDevice(t)
	if err := b.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if got := b.Save(); !reflect.DeepEqual(got, saved) {
		t.Fatalf("round trip %+v, want %+v", got, saved)
	}
	for _, p := range []uint16{DefaultSleepControlPort, DefaultSleepStatusPort} {
		if x, y := dt.In8(bus, p), dt.In8(bus2, p); x != y {
			t.Errorf("port %#x: %#x vs %#x", p, x, y)
		}
	}
	for _, bad := range []State{{SleepControl: SleepEnable}, {SleepControl: 0x01}, {SleepStatus: 0x01}} {
		if err := b.Restore(bad); err == nil {
			t.Errorf("Restore(%+v) accepted", bad)
		}
	}
	if got := b.Save(); !reflect.DeepEqual(got, saved) {
		t.Fatalf("refused Restore changed state: %+v", got)
	}
}
