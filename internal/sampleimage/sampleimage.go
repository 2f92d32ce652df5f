package sampleimage

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

const pageSize = 4096

// Mix is the share of each page kind (they need not sum to 1: they are
// normalised). The default memory mix is 60% zero, 20% random, 20% text.
type Mix struct {
	Zero, Random, Text float64
}

// MemoryMix is the mix of the benchmark image.
var MemoryMix = Mix{Zero: 0.6, Random: 0.2, Text: 0.2}

var words = []string{
	"the", "kernel", "page", "memory", "process", "struct", "return", "error", "file", "buffer",
	"int", "unsigned", "long", "static", "void", "if", "else", "for", "while", "mutex", "lock",
	"unlock", "task", "schedule", "irq", "device", "driver", "virtio", "queue", "ring", "descriptor",
	"0x0000", "0xffff", "NULL", "true", "false", "len", "size", "offset", "count", "user", "root",
	"/usr/lib", "/etc/passwd", "GET", "HTTP/1.1", "200", "OK", "json", "{", "}", "(", ")", ";",
	"python3", "import", "def", "class", "self", "print", "node_modules", "package", "version",
}

// Generator writes an image page by page: runs of 1..maxRun pages of one
// kind, chosen by the mix; deterministic for a seed.
type Generator struct {
	rng     *rand.Rand
	chacha  *rand.ChaCha8
	mix     Mix
	kind    int
	left    int
	textBuf []byte
}

// MaxRun is the longest run of one page kind.
const MaxRun = 64

// NewGenerator returns a generator for mix and seed.
func NewGenerator(mix Mix, seed uint64) *Generator {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), chacha: rand.NewChaCha8(s), mix: mix}
}

// Kinds of page.
const (
	KindZero = iota
	KindRandom
	KindText
)

func (g *Generator) pick() int {
	t := g.mix.Zero + g.mix.Random + g.mix.Text
	x := g.rng.Float64() * t
	switch {
	case x < g.mix.Zero:
		return KindZero
	case x < g.mix.Zero+g.mix.Random:
		return KindRandom
	}
	return KindText
}

// Page fills p (pageSize bytes) with the next page and returns its kind.
func (g *Generator) Page(p []byte) int {
	if g.left == 0 {
		g.kind = g.pick()
		g.left = 1 + g.rng.IntN(MaxRun)
	}
	g.left--
	g.Fill(p, g.kind)
	return g.kind
}

// Fill fills p with one page of the given kind.
func (g *Generator) Fill(p []byte, kind int) {
	switch kind {
	case KindZero:
		clear(p)
	case KindRandom:
		g.chacha.Read(p)
	default:
		b := g.textBuf[:0]
		for len(b) < len(p) {
			b = append(b, words[g.rng.IntN(len(words))]...)
			if g.rng.IntN(12) == 0 {
				b = append(b, '\n')
			} else {
				b = append(b, ' ')
			}
		}
		copy(p, b)
		g.textBuf = b
	}
}

// Write writes size bytes of image to w.
func Write(w io.Writer, size int64, mix Mix, seed uint64) error {
	g := NewGenerator(mix, seed)
	bw := bufio.NewWriterSize(w, 1<<20)
	page := make([]byte, pageSize)
	for size > 0 {
		g.Page(page)
		n := min(size, pageSize)
		if _, err := bw.Write(page[:n]); err != nil {
			return err
		}
		size -= n
	}
	return bw.Flush()
}

// WriteFile writes an image to path.
func WriteFile(path string, size int64, mix Mix, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, size, mix, seed); err != nil {
		f.Close()
		return fmt.Errorf("sampleimage: %s: %w", path, err)
	}
	return f.Close()
}

// Mutate rewrites a fraction of the image's pages, chosen at random
// (deterministic for seed), and returns how many it rewrote. With dataOnly
// the fraction is of the non-zero pages and each keeps its kind (a text page
// gets new text, any other page new random bytes): the pages a running guest
// dirties. Without it, any page may be chosen (zero pages too) and gets
// random or text content.
func Mutate(path string, fraction float64, seed uint64, dataOnly bool) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	pages := int(st.Size() / pageSize)
	page := make([]byte, pageSize)
	var candidates []int
	kinds := map[int]int{}
	for i := 0; i < pages; i++ {
		if !dataOnly {
			candidates = append(candidates, i)
			continue
		}
		if _, err := f.ReadAt(page, int64(i)*pageSize); err != nil {
			return 0, err
		}
		if k := kindOf(page); k != KindZero {
			candidates = append(candidates, i)
			kinds[i] = k
		}
	}
	g := NewGenerator(Mix{Random: 1, Text: 1}, seed)
	n := int(float64(len(candidates)) * fraction)
	for _, j := range g.rng.Perm(len(candidates))[:n] {
		pg := candidates[j]
		k, ok := kinds[pg]
		if !ok {
			k = KindRandom + g.rng.IntN(2)
		}
		g.Fill(page, k)
		if _, err := f.WriteAt(page, int64(pg)*pageSize); err != nil {
			return 0, err
		}
	}
	return n, f.Close()
}

// kindOf classifies a page: zero, text (printable ASCII and newlines) or
// random (anything else).
func kindOf(p []byte) int {
	zero, text := true, true
	for _, c := range p {
		if c != 0 {
			zero = false
		}
		if c != '\n' && (c < 0x20 || c > 0x7e) {
			text = false
		}
		if !zero && !text {
			return KindRandom
		}
	}
	if zero {
		return KindZero
	}
	return KindText
}
