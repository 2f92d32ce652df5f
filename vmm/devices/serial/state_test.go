package serial

import (
	"errors"
	"reflect"
	"testing"

	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

func TestSaveRestoreRoundTrip(t *testing.T) {
	a, _, bus := newUART(t, Config{})
	p := uint16(com1)
	dt.Out8(bus, p+regLCR, lcrDLAB)
	dt.Out8(bus, p+regData, 0x01)
	dt.Out8(bus, p+regIER, 0x02)
	dt.Out8(bus, p+regLCR, 0x03)
	dt.Out8(bus, p+regIER, ierRDA|ierTHRE)
	dt.Out8(bus, p+regIIR, fcrEnable|0x80)
	dt.Out8(bus, p+regMCR, mcrDTR|mcrRTS|mcrOUT2)
	dt.Out8(bus, p+regSCR, 0x5a)
	a.Input([]byte("hello"))
	dt.In8(bus, p+regData) // 'h' consumed
	saved := a.Save()

	b, irq, bus2 := newUART(t, Config{})
	if err := b.Restore(saved); err != nil {
		t.Fatal(err)
	}
	if !irq.High() {
		t.Fatal("restored UART with pending RX did not raise its line")
	}
	if got := b.Save(); !reflect.DeepEqual(got, saved) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, saved)
	}
	// The restored UART behaves like the original.
	for _, reg := range []uint16{regIER, regLCR, regMCR, regSCR, regLSR} {
		if x, y := dt.In8(bus, p+reg), dt.In8(bus2, p+reg); x != y {
			t.Errorf("register %d: original %#x, restored %#x", reg, x, y)
		}
	}
	var got []byte
	for dt.In8(bus2, p+regLSR)&lsrDR != 0 {
		got = append(got, dt.In8(bus2, p+regData))
	}
	if string(got) != "ello" {
		t.Fatalf("restored FIFO read %q, want ello", got)
	}
	// Save must copy: changing the restored device leaves saved alone.
	if string(saved.RX) != "ello" {
		t.Fatalf("saved RX aliased: %q", saved.RX)
	}
}

func TestRestoreRejects(t *testing.T) {
	s, _, _ := newUART(t, Config{RXBuffer: 4})
	good := s.Save()
	tests := []struct {
		name string
		mod  func(*State)
	}{
		{"IER high bits", func(st *State) { st.IER = 0x10 }},
		{"MCR high bits", func(st *State) { st.MCR = 0x20 }},
		{"FCR reset bits", func(st *State) { st.FCR = fcrClearRX }},
		{"RX too long", func(st *State) { st.RX = []byte("12345") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			tt.mod(&st)
			if err := s.Restore(st); !errors.Is(err, ErrBadState) {
				t.Fatalf("err = %v, want ErrBadState", err)
			}
			if got := s.Save(); !reflect.DeepEqual(got, good) {
				t.Fatalf("a refused Restore changed the state: %+v", got)
			}
		})
	}
}

// FuzzPortIO drives the UART with arbitrary register accesses and input:
// it must never panic, and LSR/IIR must stay consistent with the FIFO.
func FuzzPortIO(f *testing.F) {
	f.Add([]byte{0x13, 0x80, 0x10, 0x01, 0x11, 0x0f, 0x40, 0x00})
	f.Add([]byte{0x14, 0x10, 0x10, 'x', 0x15, 0x00, 0x12, 0xc7})
	f.Fuzz(func(t *testing.T, ops []byte) {
		irq := &dt.FakeIRQ{}
		s, err := New(Config{Base: com1, IRQ: irq, Out: nopWriter{}, OutBuffer: 4, RXBuffer: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := 0; i+1 < len(ops); i += 2 {
			op, v := ops[i], ops[i+1]
			reg := uint16(op & 7)
			switch op >> 4 & 3 {
			case 0:
				dt.In8(s, com1+reg)
			case 1:
				dt.Out8(s, com1+reg, v)
			case 2:
				s.Input([]byte{v, v})
			case 3:
				var buf [4]byte
				s.PortIn(com1+reg, buf[:])
			}
			s.mu.Lock()
			lsr, rx, pending, level, line := s.lineStatus(), len(s.rx), s.pendingID() != iirNone, s.level, irq.High()
			s.mu.Unlock()
			if (rx > 0) != (lsr&lsrDR != 0) {
				t.Fatalf("DR %v with %d bytes queued", lsr&lsrDR != 0, rx)
			}
			if rx > 8 {
				t.Fatalf("RX FIFO grew to %d", rx)
			}
			if pending != level || level != line {
				t.Fatalf("line level %v (fake line %v), interrupt pending %v", level, line, pending)
			}
		}
	})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
