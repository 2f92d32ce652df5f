package lab

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// markerWriter passes the command's output through line by line and takes
// out the marker line "smolvm-lab-NONCE exit=N" (and the empty line the init
// script writes before it so that it starts a line).
type markerWriter struct {
	mu     sync.Mutex
	out    io.Writer
	prefix []byte // "smolvm-lab-NONCE exit="
	buf    []byte // partial line
	blank  bool   // an empty line held back
	code   int
	found  bool
	outErr error
}

func newMarkerWriter(out io.Writer, nonce string) *markerWriter {
	return &markerWriter{out: out, prefix: []byte("smolvm-lab-" + nonce + " exit=")}
}

func (m *markerWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.buf = append(m.buf, p...)
	for {
		i := bytes.IndexByte(m.buf, '\n')
		if i < 0 {
			break
		}
		m.line(m.buf[:i+1])
		m.buf = m.buf[i+1:]
	}
	return len(p), nil // never fail QEMU's output copy: output errors are kept
}

func (m *markerWriter) line(l []byte) {
	body := bytes.TrimRight(l, "\r\n")
	if rest, ok := bytes.CutPrefix(body, m.prefix); ok {
		if n, err := strconv.Atoi(string(rest)); err == nil {
			m.code, m.found, m.blank = n, true, false
			return
		}
	}
	if len(body) == 0 && !m.blank {
		m.blank = true
		return
	}
	if m.blank {
		m.emit([]byte("\n"))
		m.blank = len(body) == 0
		if m.blank {
			return
		}
	}
	m.emit(l)
}

func (m *markerWriter) emit(b []byte) {
	if m.outErr == nil {
		_, m.outErr = m.out.Write(b)
	}
}

// Close flushes a held-back empty line and a final partial line.
func (m *markerWriter) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.blank {
		m.emit([]byte("\n"))
		m.blank = false
	}
	if len(m.buf) > 0 {
		m.emit(m.buf)
		m.buf = nil
	}
	return m.outErr
}

// status returns the exit code the marker carried.
func (m *markerWriter) status() (int, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.code, m.found
}
