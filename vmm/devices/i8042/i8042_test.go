package i8042

import (
	"errors"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices"
	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

func newController(t *testing.T) (*Controller, *int, *devices.Bus) {
	t.Helper()
	resets := new(int)
	c, err := New(DefaultDataPort, DefaultCommandPort, func() { *resets++ })
	if err != nil {
		t.Fatal(err)
	}
	bus := devices.NewBus()
	if err := c.Register(bus); err != nil {
		t.Fatal(err)
	}
	return c, resets, bus
}

// waitOBF polls the status register the way Linux's i8042_wait_read does,
// with a bound so a broken model fails instead of hanging.
func waitOBF(t *testing.T, bus *devices.Bus) uint8 {
	t.Helper()
	for range 10000 {
		if s := dt.In8(bus, DefaultCommandPort); s&StatusOBF != 0 {
			return s
		}
	}
	t.Fatal("output buffer never filled")
	return 0
}

// kbWait is Linux's kb_wait: poll until the input buffer is empty.
func kbWait(t *testing.T, bus *devices.Bus) {
	t.Helper()
	for range 0x10000 {
		if dt.In8(bus, DefaultCommandPort)&StatusIBF == 0 {
			return
		}
	}
	t.Fatal("input buffer never emptied")
}

// TestLinuxRebootPath replays the BOOT_KBD branch of Linux's
// native_machine_emergency_restart.
func TestLinuxRebootPath(t *testing.T) {
	c, resets, bus := newController(t)
	kbWait(t, bus)
	dt.Out8(bus, DefaultCommandPort, cmdPulseReset)
	if *resets != 1 || c.Resets() != 1 {
		t.Fatalf("resets = %d (%d counted), want 1", *resets, c.Resets())
	}
}

func TestResetCommands(t *testing.T) {
	tests := []struct {
		name   string
		writes [][2]uint16 // port, value
		resets int
	}{
		{"pulse reset 0xfe", [][2]uint16{{DefaultCommandPort, 0xfe}}, 1},
		{"pulse other lines 0xfd", [][2]uint16{{DefaultCommandPort, 0xfd}}, 0},
		{"pulse nothing 0xff", [][2]uint16{{DefaultCommandPort, 0xff}}, 0},
		{"pulse all 0xf0", [][2]uint16{{DefaultCommandPort, 0xf0}}, 1},
		{"output port bit 0 low", [][2]uint16{{DefaultCommandPort, cmdWriteOutPort}, {DefaultDataPort, 0xfe}}, 1},
		{"output port bit 0 high", [][2]uint16{{DefaultCommandPort, cmdWriteOutPort}, {DefaultDataPort, 0x03}}, 0},
		{"0xfe on the data port", [][2]uint16{{DefaultDataPort, 0xfe}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, resets, bus := newController(t)
			for _, w := range tt.writes {
				dt.Out8(bus, w[0], uint8(w[1]))
			}
			if *resets != tt.resets {
				t.Fatalf("resets = %d, want %d", *resets, tt.resets)
			}
		})
	}
}

// TestLinuxProbe replays the i8042 driver's controller checks and a
// keyboard and mouse command: every step answers at once, and both devices
// report a timeout so their probes fail fast.
func TestLinuxProbe(t *testing.T) {
	c, resets, bus := newController(t)
	// i8042_flush: nothing pending.
	if s := dt.In8(bus, DefaultCommandPort); s&StatusOBF != 0 {
		t.Fatalf("status %#x: output buffer full at power on", s)
	}
	// Self test.
	dt.Out8(bus, DefaultCommandPort, cmdSelfTest)
	waitOBF(t, bus)
	if v := dt.In8(bus, DefaultDataPort); v != selfTestOK {
		t.Fatalf("self test = %#x, want 0x55", v)
	}
	// Read and write the command byte.
	dt.Out8(bus, DefaultCommandPort, cmdReadCTR)
	waitOBF(t, bus)
	ctr := dt.In8(bus, DefaultDataPort)
	if ctr != defaultCTR {
		t.Fatalf("CTR = %#x, want %#x", ctr, defaultCTR)
	}
	dt.Out8(bus, DefaultCommandPort, cmdWriteCTR)
	dt.Out8(bus, DefaultDataPort, ctr&^ctrKbdDis|ctrAuxDis)
	dt.Out8(bus, DefaultCommandPort, cmdReadCTR)
	waitOBF(t, bus)
	if v := dt.In8(bus, DefaultDataPort); v != ctr&^ctrKbdDis|ctrAuxDis {
		t.Fatalf("CTR after write = %#x", v)
	}
	// Interface tests.
	for _, cmd := range []uint8{cmdTestKbd, cmdTestAux} {
		dt.Out8(bus, DefaultCommandPort, cmd)
		waitOBF(t, bus)
		if v := dt.In8(bus, DefaultDataPort); v != portTestOK {
			t.Fatalf("interface test %#x = %#x", cmd, v)
		}
	}
	// Loop a byte through the aux port (i8042_check_aux).
	dt.Out8(bus, DefaultCommandPort, cmdWriteAuxOut)
	dt.Out8(bus, DefaultDataPort, 0x5a)
	if s := waitOBF(t, bus); s&StatusAuxOBF == 0 || s&StatusTimeout != 0 {
		t.Fatalf("aux loop status %#x", s)
	}
	if v := dt.In8(bus, DefaultDataPort); v != 0x5a {
		t.Fatalf("aux loop = %#x", v)
	}
	// A keyboard command (atkbd GETID) times out at once.
	dt.Out8(bus, DefaultDataPort, 0xf2)
	if s := waitOBF(t, bus); s&StatusTimeout == 0 || s&StatusAuxOBF != 0 {
		t.Fatalf("keyboard command status %#x, want timeout from the keyboard", s)
	}
	if v := dt.In8(bus, DefaultDataPort); v != noDevice {
		t.Fatalf("keyboard answer %#x", v)
	}
	// A mouse command through 0xD4 likewise.
	dt.Out8(bus, DefaultCommandPort, cmdWriteAux)
	dt.Out8(bus, DefaultDataPort, 0xff)
	if s := waitOBF(t, bus); s&(StatusTimeout|StatusAuxOBF) != StatusTimeout|StatusAuxOBF {
		t.Fatalf("mouse command status %#x", s)
	}
	dt.In8(bus, DefaultDataPort)
	if s := dt.In8(bus, DefaultCommandPort); s&StatusOBF != 0 {
		t.Fatalf("status %#x after draining", s)
	}
	if *resets != 0 || c.Resets() != 0 {
		t.Fatal("probe caused a reset")
	}
}

func TestQueueBounded(t *testing.T) {
	c, _, bus := newController(t)
	for range 100 {
		dt.Out8(bus, DefaultCommandPort, cmdSelfTest)
	}
	if n := len(c.Save().Queue); n != maxQueue {
		t.Fatalf("queue holds %d, want %d", n, maxQueue)
	}
	if v := dt.In8(bus, 0x61); v != 0xff {
		t.Fatalf("port 0x61 (not ours) = %#x", v)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(0x60, 0x60, func() {}); err == nil {
		t.Error("same ports accepted")
	}
	if _, err := New(0x60, 0x64, nil); err == nil {
		t.Error("nil reset accepted")
	}
}

func TestSaveRestore(t *testing.T) {
	a, _, bus := newController(t)
	dt.Out8(bus, DefaultCommandPort, cmdWriteCTR)
	dt.Out8(bus, DefaultDataPort, 0x47)
	dt.Out8(bus, DefaultDataPort, 0xf2) // queued keyboard timeout
	dt.Out8(bus, DefaultCommandPort, cmdReadCTR)
	dt.Out8(bus, DefaultCommandPort, cmdWriteOutPort) // pending
	saved := a.Save()
	if len(saved.Queue) != 2 || saved.PendingCommand != cmdWriteOutPort {
		t.Fatalf("saved %+v", saved)
	}
	b, resets, bus2 := newController(t)
	if err := b.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if got := b.Save(); !reflect.DeepEqual(got, saved) {
		t.Fatalf("round trip %+v, want %+v", got, saved)
	}
	for range 3 {
		if x, y := dt.In8(bus, DefaultCommandPort), dt.In8(bus2, DefaultCommandPort); x != y {
			t.Fatalf("status %#x vs %#x", x, y)
		}
		if x, y := dt.In8(bus, DefaultDataPort), dt.In8(bus2, DefaultDataPort); x != y {
			t.Fatalf("data %#x vs %#x", x, y)
		}
	}
	dt.Out8(bus2, DefaultDataPort, 0x00) // completes the pending output-port write: reset
	if *resets != 1 {
		t.Fatal("restored pending command lost")
	}
	bad := []State{
		{Queue: make([]Answer, maxQueue+1)},
		{PendingCommand: cmdSelfTest},
	}
	for _, st := range bad {
		if err := b.Restore(st); !errors.Is(err, ErrBadState) {
			t.Errorf("Restore(%+v) = %v, want ErrBadState", st, err)
		}
	}
}
