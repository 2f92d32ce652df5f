package vmgenid

import (
	"bytes"
	"crypto/rand"
	"errors"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/devicetest"
)

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		mem  []byte
		irq  bool
	}{
		{"short memory", make([]byte, Size-1), true},
		{"no memory", nil, true},
		{"no IRQ", make([]byte, Size), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var irq *devicetest.FakeIRQ
			if tt.irq {
				irq = &devicetest.FakeIRQ{}
			}
			var err error
			if irq != nil {
				_, err = New(tt.mem, irq)
			} else {
				_, err = New(tt.mem, nil)
			}
			if !errors.Is(err, ErrBadConfig) {
				t.Errorf("err = %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestGenerateWritesGuestMemory: the ID lands in the first Size bytes of the
// page and nowhere else; each call gives a different one.
func TestGenerateWritesGuestMemory(t *testing.T) {
	page := make([]byte, 4096)
	for i := range page {
		page[i] = 0xAA
	}
	d, err := New(page[64:], &devicetest.FakeIRQ{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[ID]bool{}
	for i := range 8 {
		id, err := d.Generate(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(page[64:64+Size], id[:]) || d.ID() != id {
			t.Fatalf("generation %d: memory % x, ID() %x, want %x", i, page[64:64+Size], d.ID(), id)
		}
		if id == (ID{}) || seen[id] {
			t.Fatalf("generation %d: ID %x is zero or repeats", i, id)
		}
		seen[id] = true
	}
	for i, b := range page {
		if (i < 64 || i >= 64+Size) && b != 0xAA {
			t.Fatalf("byte %d outside the ID changed to %#x", i, b)
		}
	}
	if st := d.Stats(); st.Generations != 8 || st.Notifies != 0 {
		t.Errorf("stats %+v, want 8 generations and no notify", st)
	}
}

// fixedReader returns the same bytes forever.
type fixedReader byte

func (f fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f)
	}
	return len(p), nil
}

func TestGenerateRefusesZeroAndRepeats(t *testing.T) {
	mem := make([]byte, Size)
	d, _ := New(mem, &devicetest.FakeIRQ{})
	if _, err := d.Generate(fixedReader(0)); err == nil {
		t.Error("an all-zero ID was accepted")
	}
	if _, err := d.Generate(fixedReader(7)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Generate(fixedReader(7)); err == nil {
		t.Error("the same ID was accepted twice")
	}
	if !bytes.Equal(mem, bytes.Repeat([]byte{7}, Size)) {
		t.Errorf("memory % x after refused IDs", mem)
	}
	if _, err := d.Generate(bytes.NewReader([]byte{1, 2, 3})); err == nil {
		t.Error("a short random source was accepted")
	}
}

// TestNotifyPulses: a notify is one rising edge that ends low; a failing
// line is reported and counted.
func TestNotifyPulses(t *testing.T) {
	irq := &devicetest.FakeIRQ{}
	d, _ := New(make([]byte, Size), irq)
	for range 2 {
		if err := d.Notify(); err != nil {
			t.Fatal(err)
		}
	}
	if got := irq.Levels(); !reflect.DeepEqual(got, []bool{true, false, true, false}) {
		t.Errorf("levels %v, want two pulses", got)
	}
	irq.Fail(true)
	if err := d.Notify(); !errors.Is(err, devicetest.ErrIRQFailed) {
		t.Errorf("notify on a failing line: %v", err)
	}
	if st := d.Stats(); st.Notifies != 2 || st.NotifyErrors != 1 {
		t.Errorf("stats %+v", st)
	}
}
