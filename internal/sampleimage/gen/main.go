package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/smolvm/smolvm/internal/sampleimage"
)

func main() {
	out := flag.String("o", "", "image to write")
	size := flag.String("size", "256M", "image size (K, M, G suffixes: powers of 1024)")
	seed := flag.Uint64("seed", 1, "random seed")
	zero := flag.Float64("zero", sampleimage.MemoryMix.Zero, "share of zero pages")
	random := flag.Float64("random", sampleimage.MemoryMix.Random, "share of random pages")
	text := flag.Float64("text", sampleimage.MemoryMix.Text, "share of text-like pages")
	mutate := flag.String("mutate", "", "image to mutate in place")
	fraction := flag.Float64("fraction", 0.05, "share of pages -mutate rewrites")
	anyPage := flag.Bool("any", false, "-mutate may pick zero pages too (default: only data pages, same kind)")
	flag.Parse()
	if *mutate != "" {
		n, err := sampleimage.Mutate(*mutate, *fraction, *seed, !*anyPage)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		fmt.Printf("rewrote %d pages of %s\n", n, *mutate)
		return
	}
	n, err := parseSize(*size)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "gen: want -o FILE and -size N[K|M|G]")
		os.Exit(2)
	}
	if err := sampleimage.WriteFile(*out, n, sampleimage.Mix{Zero: *zero, Random: *random, Text: *text}, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult = 1 << 10
	case strings.HasSuffix(s, "M"):
		mult = 1 << 20
	case strings.HasSuffix(s, "G"):
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}
