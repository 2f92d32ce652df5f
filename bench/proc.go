package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Memory is a process's resident and proportional set size.
type Memory struct {
	RSS int64 // bytes
	PSS int64 // bytes: shared pages counted by the share each process has
}

// ProcessMemory reads /proc/PID/smaps_rollup.
func ProcessMemory(pid int) (Memory, error) {
	path := fmt.Sprintf("/proc/%d/smaps_rollup", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return Memory{}, fmt.Errorf("bench: %w", err)
	}
	m, err := ParseSmapsRollup(bytes.NewReader(b))
	if err != nil {
		return Memory{}, fmt.Errorf("bench: %s: %w", path, err)
	}
	return m, nil
}

// ParseSmapsRollup reads the "Rss:" and "Pss:" lines (in kB) of a
// smaps_rollup file; both must be present exactly once.
func ParseSmapsRollup(r io.Reader) (Memory, error) {
	var m Memory
	var seenRSS, seenPSS bool
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "Rss" && key != "Pss") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("line %d: %s: want \"N kB\", got %q", line, key, strings.TrimSpace(rest))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<50 {
			return Memory{}, fmt.Errorf("line %d: %s: bad size %q", line, key, f[0])
		}
		switch key {
		case "Rss":
			if seenRSS {
				return Memory{}, fmt.Errorf("line %d: a second Rss line", line)
			}
			seenRSS, m.RSS = true, kb*1024
		case "Pss":
			if seenPSS {
				return Memory{}, fmt.Errorf("line %d: a second Pss line", line)
			}
			seenPSS, m.PSS = true, kb*1024
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if !seenRSS || !seenPSS {
		return Memory{}, fmt.Errorf("no Rss or Pss line")
	}
	return m, nil
}

// sumMemory adds the memory of every pid; it fails on the first that
// cannot be read.
func sumMemory(pids []int) (Memory, error) {
	var total Memory
	for _, pid := range pids {
		m, err := ProcessMemory(pid)
		if err != nil {
			return Memory{}, err
		}
		total.RSS += m.RSS
		total.PSS += m.PSS
	}
	return total, nil
}
