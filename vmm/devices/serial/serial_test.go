package serial

import (
	"context"
	"errors"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/syncbuf"
	"github.com/smolvm/smolvm/vmm/devices"
	dt "github.com/smolvm/smolvm/vmm/devices/devicetest"
)

const com1 = 0x3f8

func newUART(t *testing.T, cfg Config) (*Serial, *dt.FakeIRQ, *devices.Bus) {
	t.Helper()
	irq := &dt.FakeIRQ{}
	if cfg.Base == 0 {
		cfg.Base = com1
	}
	cfg.IRQ = irq
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	bus := devices.NewBus()
	if err := s.Register(bus); err != nil {
		t.Fatal(err)
	}
	return s, irq, bus
}

// TestLinuxAutoconfig replays the register sequence Linux's 8250 driver uses
// to detect a 16550A (IER scratch test, loopback MSR test, FIFO probe, the
// EFR and 16750 checks) and checks the answers that make it say "16550A".
func TestLinuxAutoconfig(t *testing.T) {
	_, _, bus := newUART(t, Config{})
	p := uint16(com1)

	// IER: only the low nibble is implemented.
	dt.Out8(bus, p+regIER, 0)
	if v := dt.In8(bus, p+regIER); v&0x0f != 0 {
		t.Fatalf("IER after 0 = %#x", v)
	}
	dt.Out8(bus, p+regIER, 0xff)
	if v := dt.In8(bus, p+regIER); v != 0x0f {
		t.Fatalf("IER after 0xff = %#x, want 0x0f", v)
	}
	dt.Out8(bus, p+regIER, 0)

	// Loopback: RTS->CTS, OUT2->DCD gives MSR high nibble 0x90.
	dt.Out8(bus, p+regMCR, mcrLoop|0x0a)
	if v := dt.In8(bus, p+regMSR) & 0xf0; v != 0x90 {
		t.Fatalf("loopback MSR = %#x, want 0x90", v)
	}
	dt.Out8(bus, p+regMCR, 0)

	// FIFO probe: IIR bits 6-7 both set once FCR enables the FIFOs.
	dt.Out8(bus, p+regIIR, fcrEnable)
	if v := dt.In8(bus, p+regIIR) >> 6; v != 3 {
		t.Fatalf("IIR>>6 = %d with FIFOs on, want 3 (16550A)", v)
	}
	// EFR probes read offset 2 with LCR 0x80 and 0xBF: a 16550A returns IIR,
	// which is not 0.
	for _, lcr := range []uint8{0x80, 0xbf} {
		dt.Out8(bus, p+regLCR, lcr)
		if v := dt.In8(bus, p+regIIR); v == 0 {
			t.Fatalf("offset 2 with LCR %#x reads 0: Linux would take this for an EFR", lcr)
		}
	}
	dt.Out8(bus, p+regLCR, 0)
	// 16750 check: 64-byte FIFO bit must not stick (IIR bit 5 stays clear).
	dt.Out8(bus, p+regLCR, lcrDLAB)
	dt.Out8(bus, p+regIIR, fcrEnable|0x20)
	s1 := dt.In8(bus, p+regIIR) >> 5
	dt.Out8(bus, p+regLCR, 0)
	s2 := dt.In8(bus, p+regIIR) >> 5
	if s1 == 7 || s2 == 7 {
		t.Fatalf("IIR>>5 = %d/%d: looks like a 16750", s1, s2)
	}

	// size_fifo: in loopback the FIFO holds 16 bytes, not 64.
	dt.Out8(bus, p+regIIR, fcrEnable|fcrClearRX|fcrClearTX)
	dt.Out8(bus, p+regMCR, mcrLoop)
	for i := range 256 {
		dt.Out8(bus, p+regData, byte(i))
	}
	n := 0
	for dt.In8(bus, p+regLSR)&lsrDR != 0 && n < 1000 {
		dt.In8(bus, p+regData)
		n++
	}
	if n != loopbackFIFO {
		t.Fatalf("loopback FIFO held %d bytes, want %d", n, loopbackFIFO)
	}
	dt.Out8(bus, p+regMCR, 0)

	// Scratch register.
	dt.Out8(bus, p+regSCR, 0xa5)
	if v := dt.In8(bus, p+regSCR); v != 0xa5 {
		t.Fatalf("SCR = %#x", v)
	}
}

// TestTHREReassert is Linux's UART_BUG_THRE test: enabling the THRE
// interrupt while the transmitter is idle must raise it, twice in a row.
func TestTHREReassert(t *testing.T) {
	_, irq, bus := newUART(t, Config{})
	p := uint16(com1)
	dt.Out8(bus, p+regIER, ierTHRE)
	iir1 := dt.In8(bus, p+regIIR)
	dt.Out8(bus, p+regIER, 0)
	dt.Out8(bus, p+regIER, ierTHRE)
	iir2 := dt.In8(bus, p+regIIR)
	dt.Out8(bus, p+regIER, 0)
	if iir1&iirNone != 0 || iir2&iirNone != 0 || iir1&0x0f != iirTHRE || iir2&0x0f != iirTHRE {
		t.Fatalf("IIR = %#x then %#x, want THRE (0x02) both times", iir1, iir2)
	}
	if got := irq.Levels(); !reflect.DeepEqual(got, []bool{true, false, true, false}) {
		t.Fatalf("IRQ levels %v, want rise/fall twice", got)
	}
}

func TestDivisorLatch(t *testing.T) {
	s, _, bus := newUART(t, Config{})
	p := uint16(com1)
	dt.Out8(bus, p+regIER, ierRDA)
	dt.Out8(bus, p+regLCR, lcrDLAB|0x03)
	dt.Out8(bus, p+regData, 0x01) // DLL: 115200 baud
	dt.Out8(bus, p+regIER, 0x00)  // DLM
	if v := dt.In8(bus, p+regData); v != 0x01 {
		t.Fatalf("DLL = %#x", v)
	}
	dt.Out8(bus, p+regLCR, 0x03)
	if v := dt.In8(bus, p+regIER); v != ierRDA {
		t.Fatalf("IER = %#x after DLAB writes, want %#x (DLM must not alias IER)", v, ierRDA)
	}
	if st := s.Save(); st.DLL != 1 || st.DLM != 0 || st.LCR != 0x03 {
		t.Fatalf("state %+v", st)
	}
}

func TestOutput(t *testing.T) {
	var out syncbuf.Buffer
	s, irq, bus := newUART(t, Config{Out: &out})
	p := uint16(com1)
	dt.Out8(bus, p+regIER, ierTHRE)
	msg := "Brought up 1 node, 2 CPUs\r\n"
	for i := range len(msg) {
		if dt.In8(bus, p+regLSR)&lsrTHRE == 0 {
			t.Fatal("THRE clear with an empty buffer")
		}
		dt.Out8(bus, p+regData, msg[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if out.String() != msg {
		t.Fatalf("output %q, want %q", out.String(), msg)
	}
	if !irq.High() {
		t.Fatal("THRE interrupt not pending after transmit with IER.THRE set")
	}
	if st := s.Stats(); st.OutBytes != uint64(len(msg)) || st.OutDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// blockingWriter blocks every Write until release is closed; entered gets
// a value each time a Write starts (if anyone listens).
type blockingWriter struct {
	release chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	got     []byte
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{release: make(chan struct{}), entered: make(chan struct{}, 16)}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, p...)
	return len(p), nil
}

// TestSlowWriterBackpressure: a stuck writer fills the buffer; the UART then
// reports the transmitter busy, drops (and counts) what is written anyway,
// and raises THRE once the writer catches up.
func TestSlowWriterBackpressure(t *testing.T) {
	w := newBlockingWriter()
	s, irq, bus := newUART(t, Config{Out: w, OutBuffer: 8})
	p := uint16(com1)
	dt.Out8(bus, p+regIER, ierTHRE)
	dt.In8(bus, p+regIIR) // ack the enable-time THRE
	deadline := time.Now().Add(5 * time.Second)
	// The goroutine takes the first byte and blocks in Write.
	dt.Out8(bus, p+regData, '<')
	sent := 1
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("writer never called")
	}
	dt.In8(bus, p+regIIR) // ack THRE from that write
	// Now exactly OutBuffer more bytes fit.
	for dt.In8(bus, p+regLSR)&lsrTHRE != 0 {
		if sent > 100 {
			t.Fatal("buffer never filled")
		}
		dt.Out8(bus, p+regData, 'a'+byte(sent%26))
		sent++
	}
	if sent != 1+8 {
		t.Fatalf("THRE cleared after %d bytes, want 9 (1 in Write + an 8-byte buffer)", sent)
	}
	if lsr := dt.In8(bus, p+regLSR); lsr&(lsrTHRE|lsrTEMT) != 0 {
		t.Fatalf("LSR %#x: THRE/TEMT set with a full buffer", lsr)
	}
	if irq.High() {
		t.Fatal("THRE interrupt pending while the buffer is full")
	}
	dt.Out8(bus, p+regData, '!') // the polled console writes anyway
	if st := s.Stats(); st.OutDropped != 1 {
		t.Fatalf("OutDropped = %d, want 1", st.OutDropped)
	}
	close(w.release)
	for !irq.High() {
		if time.Now().After(deadline) {
			t.Fatal("THRE interrupt not raised after the writer drained")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	got := len(w.got)
	w.mu.Unlock()
	if got != sent {
		t.Fatalf("writer got %d bytes, want %d", got, sent)
	}
}

func TestCloseBoundedWithStuckWriter(t *testing.T) {
	old := CloseTimeout
	CloseTimeout = 50 * time.Millisecond
	defer func() { CloseTimeout = old }()
	w := newBlockingWriter()
	s, err := New(Config{Base: com1, Out: w})
	if err != nil {
		t.Fatal(err)
	}
	dt.Out8(s, com1, 'x')
	<-w.entered
	start := time.Now()
	if err := s.Close(); err == nil {
		t.Fatal("Close returned nil with the writer stuck")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %v", d)
	}
	close(w.release) // let the goroutine finish
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("flush after release: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriterErrorsCounted(t *testing.T) {
	s, _, bus := newUART(t, Config{Out: failingWriter{}})
	dt.Out8(bus, com1, 'x')
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.WriteErrors != 1 || !errors.Is(st.LastWriteErr, io.ErrClosedPipe) || st.OutBytes != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInput(t *testing.T) {
	s, irq, bus := newUART(t, Config{RXBuffer: 4})
	p := uint16(com1)
	if dt.In8(bus, p+regLSR)&lsrDR != 0 {
		t.Fatal("DR set with nothing received")
	}
	if n := s.Input([]byte("ab")); n != 2 {
		t.Fatalf("Input queued %d", n)
	}
	if irq.High() {
		t.Fatal("RX interrupt raised while IER.RDA is clear")
	}
	dt.Out8(bus, p+regIER, ierRDA)
	if !irq.High() {
		t.Fatal("RX interrupt not raised after enabling it with data waiting")
	}
	if v := dt.In8(bus, p+regIIR) & 0x0f; v != iirRDA {
		t.Fatalf("IIR = %#x, want RDA", v)
	}
	if n := s.Input([]byte("cdef")); n != 2 {
		t.Fatalf("Input queued %d into a 4-byte FIFO holding 2, want 2", n)
	}
	if st := s.Stats(); st.InDropped != 2 {
		t.Fatalf("InDropped = %d, want 2", st.InDropped)
	}
	var got []byte
	for dt.In8(bus, p+regLSR)&lsrDR != 0 {
		got = append(got, dt.In8(bus, p+regData))
	}
	if string(got) != "abcd" {
		t.Fatalf("read %q, want abcd", got)
	}
	if irq.High() {
		t.Fatal("RX interrupt still high with the FIFO empty")
	}
	if v := dt.In8(bus, p+regIIR); v&iirNone == 0 {
		t.Fatalf("IIR = %#x, want no interrupt", v)
	}
	// FCR clear-RX drops what is queued.
	s.Input([]byte("zz"))
	dt.Out8(bus, p+regIIR, fcrEnable|fcrClearRX)
	if dt.In8(bus, p+regLSR)&lsrDR != 0 || irq.High() {
		t.Fatal("FIFO clear left data or interrupt")
	}
}

func TestInterruptPriority(t *testing.T) {
	s, _, bus := newUART(t, Config{})
	p := uint16(com1)
	dt.Out8(bus, p+regIER, ierRDA|ierTHRE|ierRLS|ierMS)
	s.Input([]byte{1})
	dt.Out8(bus, p+regMCR, mcrLoop|mcrRTS) // MSR delta pending
	dt.Out8(bus, p+regMCR, mcrLoop)        // loopback: receiver off the line
	dt.Out8(bus, p+regMCR, 0)
	for i := 0; i < loopbackFIFO+1; i++ {
		dt.Out8(bus, p+regMCR, mcrLoop)
		dt.Out8(bus, p+regData, 0)
	}
	dt.Out8(bus, p+regMCR, 0)
	steps := []struct {
		want uint8
		ack  func()
	}{
		{iirRLS, func() { dt.In8(bus, p+regLSR) }},
		{iirRDA, func() {
			for dt.In8(bus, p+regLSR)&lsrDR != 0 {
				dt.In8(bus, p+regData)
			}
		}},
		{iirTHRE, func() {}}, // reading IIR acknowledged it
		{iirMS, func() { dt.In8(bus, p+regMSR) }},
		{iirNone, func() {}},
	}
	for i, st := range steps {
		if v := dt.In8(bus, p+regIIR) & 0x0f; v != st.want {
			t.Fatalf("step %d: IIR = %#x, want %#x", i, v, st.want)
		}
		st.ack()
	}
}

func TestIRQErrorCounted(t *testing.T) {
	s, irq, bus := newUART(t, Config{})
	irq.Fail(true)
	dt.Out8(bus, com1+regIER, ierTHRE)
	if st := s.Stats(); st.IRQErrors != 1 || !errors.Is(st.LastIRQErr, dt.ErrIRQFailed) {
		t.Fatalf("stats %+v", st)
	}
	irq.Fail(false)
	dt.In8(bus, com1+regLSR) // any access retries the level
	if !irq.High() {
		t.Fatal("line not raised once SetLevel works again")
	}
}

func TestNewErrors(t *testing.T) {
	for _, cfg := range []Config{{Base: 0xfffa}, {OutBuffer: -1}, {RXBuffer: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
