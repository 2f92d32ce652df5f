package virtio

import (
	"fmt"
	"io"
)

// ChainReader reads a chain's readable segments in order.
type ChainReader struct {
	mem  Memory
	segs []Segment
	off  uint32 // offset in segs[0]
}

// Read fills p from the next readable bytes; io.EOF at the end.
func (r *ChainReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(r.segs) > 0 {
		s := r.segs[0]
		m := min(len(p)-n, int(s.Len-r.off))
		if err := r.mem.Read(s.Addr+uint64(r.off), p[n:n+m]); err != nil {
			return n, err
		}
		n += m
		r.advance(m)
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Skip passes over n readable bytes; an error if fewer remain.
func (r *ChainReader) Skip(n uint64) error {
	for n > 0 {
		if len(r.segs) == 0 {
			return fmt.Errorf("%w: skip past the readable bytes", ErrBadChain)
		}
		m := min(n, uint64(r.segs[0].Len-r.off))
		r.advance(int(m))
		n -= m
	}
	return nil
}

func (r *ChainReader) advance(m int) {
	r.off += uint32(m)
	if r.off == r.segs[0].Len {
		r.segs, r.off = r.segs[1:], 0
	}
}

// Remaining is how many readable bytes are left.
func (r *ChainReader) Remaining() uint64 {
	var t uint64
	for i, s := range r.segs {
		t += uint64(s.Len)
		if i == 0 {
			t -= uint64(r.off)
		}
	}
	return t
}

// ChainWriter writes a chain's writable segments in order and counts what it
// wrote (the used ring's length).
type ChainWriter struct {
	mem     Memory
	segs    []Segment
	off     uint32
	written uint64
}

// Write copies p into the next writable bytes; io.ErrShortWrite when the
// chain has no room for all of it (what fits is written).
func (w *ChainWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) && len(w.segs) > 0 {
		s := w.segs[0]
		m := min(len(p)-n, int(s.Len-w.off))
		if err := w.mem.Write(s.Addr+uint64(w.off), p[n:n+m]); err != nil {
			return n, err
		}
		n += m
		w.written += uint64(m)
		w.off += uint32(m)
		if w.off == s.Len {
			w.segs, w.off = w.segs[1:], 0
		}
	}
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// Written is the number of bytes written so far.
func (w *ChainWriter) Written() uint64 { return w.written }

// Remaining is how many writable bytes are left.
func (w *ChainWriter) Remaining() uint64 {
	var t uint64
	for i, s := range w.segs {
		t += uint64(s.Len)
		if i == 0 {
			t -= uint64(w.off)
		}
	}
	return t
}
