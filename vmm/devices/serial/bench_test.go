package serial

import (
	"context"
	"testing"
	"time"
)

// BenchmarkTransmit measures the cost of one guest byte written to THR with
// the polled console's LSR check before it, output going to a discarding
// writer (the vCPU-side cost of console output).
func BenchmarkTransmit(b *testing.B) {
	s, err := New(Config{Base: com1, Out: nopWriter{}, OutBuffer: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	lsr := make([]byte, 1)
	thr := []byte{'x'}
	b.SetBytes(1)
	for b.Loop() {
		s.PortIn(com1+regLSR, lsr)
		s.PortOut(com1+regData, thr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if st := s.Stats(); st.OutDropped > 0 {
		b.ReportMetric(float64(st.OutDropped)/float64(b.N), "dropped/op")
	}
}
