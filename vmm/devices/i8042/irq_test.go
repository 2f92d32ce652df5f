package i8042

import (
	"errors"
	"reflect"
	"testing"

	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

// TestLinuxAuxIRQTest replays i8042_check_aux's IRQ delivery test: with
// the mouse port and its interrupt enabled, a byte looped through 0xD3 must
// raise the mouse line with the aux bit set in the status register.
func TestLinuxAuxIRQTest(t *testing.T) {
	c, _, bus := newController(t)
	kbd, aux := &dt.FakeIRQ{}, &dt.FakeIRQ{}
	c.SetIRQs(kbd, aux)
	dt.Out8(bus, DefaultCommandPort, cmdWriteCTR)
	dt.Out8(bus, DefaultDataPort, defaultCTR|ctrAuxInt)
	dt.Out8(bus, DefaultCommandPort, cmdWriteAuxOut)
	dt.Out8(bus, DefaultDataPort, 0xa5)
	if !aux.High() || kbd.High() {
		t.Fatalf("aux line %v kbd line %v, want aux only", aux.High(), kbd.High())
	}
	if s := dt.In8(bus, DefaultCommandPort); s&(StatusOBF|StatusAuxOBF) != StatusOBF|StatusAuxOBF {
		t.Fatalf("status %#x", s)
	}
	if v := dt.In8(bus, DefaultDataPort); v != 0xa5 {
		t.Fatalf("data %#x", v)
	}
	if aux.High() {
		t.Fatal("aux line still high after the byte was read")
	}
}

// TestKeyboardTimeoutInterrupt: a keyboard command answers 0xFE with the
// timeout bit and raises the keyboard line (Linux's atkbd probe then fails
// at once); interrupts masked in the command byte stay low.
func TestKeyboardTimeoutInterrupt(t *testing.T) {
	c, _, bus := newController(t)
	kbd, aux := &dt.FakeIRQ{}, &dt.FakeIRQ{}
	c.SetIRQs(kbd, aux)
	dt.Out8(bus, DefaultDataPort, 0xf2) // GETID
	if !kbd.High() || aux.High() {
		t.Fatalf("kbd line %v aux line %v", kbd.High(), aux.High())
	}
	if s := dt.In8(bus, DefaultCommandPort); s&StatusTimeout == 0 || s&StatusUnlock == 0 {
		t.Fatalf("status %#x, want timeout and unlocked", s)
	}
	dt.In8(bus, DefaultDataPort)
	// Masked: KBDINT clear.
	dt.Out8(bus, DefaultCommandPort, cmdWriteCTR)
	dt.Out8(bus, DefaultDataPort, ctrSys)
	dt.Out8(bus, DefaultDataPort, 0xf2)
	if kbd.High() {
		t.Fatal("keyboard line raised with KBDINT clear")
	}
}

// TestEdgePerByte: two queued bytes give two rising edges.
func TestEdgePerByte(t *testing.T) {
	c, _, bus := newController(t)
	kbd := &dt.FakeIRQ{}
	c.SetIRQs(kbd, nil)
	dt.Out8(bus, DefaultCommandPort, cmdSelfTest)
	dt.Out8(bus, DefaultCommandPort, cmdTestKbd)
	dt.In8(bus, DefaultDataPort)
	dt.In8(bus, DefaultDataPort)
	want := []bool{false, true, false, true, false}
	if got := kbd.Levels(); !reflect.DeepEqual(got, want) {
		t.Fatalf("levels %v, want %v", got, want)
	}
}

func TestIRQErrorsAndRestore(t *testing.T) {
	c, _, bus := newController(t)
	kbd := &dt.FakeIRQ{}
	c.SetIRQs(kbd, nil)
	kbd.Fail(true)
	dt.Out8(bus, DefaultCommandPort, cmdSelfTest)
	if n, err := c.IRQErrors(); n != 1 || !errors.Is(err, dt.ErrIRQFailed) {
		t.Fatalf("IRQ errors %d %v", n, err)
	}
	kbd.Fail(false)
	st := c.Save()
	c2, _, _ := newController(t)
	kbd2 := &dt.FakeIRQ{}
	c2.SetIRQs(kbd2, nil)
	if err := c2.Restore(st); err != nil {
		t.Fatal(err)
	}
	if !kbd2.High() {
		t.Fatal("restored controller with a queued keyboard byte left its line low")
	}
}
