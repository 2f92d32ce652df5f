package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteTable prints rep as a human table: a header naming the machine, the
// acceleration ("nested TCG" or "hardware KVM") and the page cache state,
// one row per method and memory size, then the notes.
func WriteTable(w io.Writer, rep *Report) error {
	e := rep.Env
	fmt.Fprintf(w, "smolvm bench [%s, page cache %s] %s, %d run(s) each\n", e.Accel, e.PageCache, e.Date.UTC().Format("2006-01-02 15:04 UTC"), e.Runs)
	if e.Host != "" {
		fmt.Fprintf(w, "host:  %s\n", e.Host)
	}
	if e.Guest != "" {
		fmt.Fprintf(w, "guest: %s\n", e.Guest)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	cols := []string{"METHOD", "MEM", "READY", "MIN", "MAX", "VS BOOT", "RAM READ", "FAULTS", "PREFETCH USED/WASTED", "RSS", "PSS", "SIZE"}
	if e.Clones > 1 {
		cols = append(cols, fmt.Sprintf("PSS/CLONE(%d)", e.Clones))
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	for _, r := range rep.Results {
		row := []string{r.Method, sizeString(r.MemBytes)}
		if r.Error != "" {
			row = append(row, "failed", "", "", "", "", "", "", "", "", "")
		} else {
			row = append(row, secString(r.Ready.Median), secString(r.Ready.Min), secString(r.Ready.Max),
				ratioString(r.VsBoot), sizeString(r.RAMReadBytes), countString(r.Faults), prefetchString(r.PrefetchUsed, r.PrefetchWasted),
				sizeString(r.RSSBytes), sizeString(r.PSSBytes), sizeString(r.SizeBytes))
		}
		if e.Clones > 1 {
			c := "-"
			if r.Clones != nil {
				c = sizeString(r.Clones.PSSPerClone)
			}
			row = append(row, c)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	writeFailures(w, rep.Results)
	writePhases(w, rep.Results)
	for _, s := range e.Skipped {
		fmt.Fprintf(w, "%s not run: %s\n", s.Method, s.Reason)
	}
	for _, n := range e.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintf(w, "VS BOOT = median ready time / boot's median at the same memory size (lower is better); figures are %s.\n", e.Accel)
	_, err := fmt.Fprintf(w, "command: %s\n", e.Command)
	return err
}

// writeFailures prints each failure once: methods that failed with the
// same error at one size (a shared snapshot that could not be made) are
// named together.
func writeFailures(w io.Writer, results []Result) {
	type key struct {
		mem int64
		err string
	}
	var order []key
	names := map[key][]string{}
	for _, r := range results {
		if r.Error == "" {
			continue
		}
		k := key{r.MemBytes, strings.TrimSpace(r.Error)}
		if names[k] == nil {
			order = append(order, k)
		}
		names[k] = append(names[k], r.Method)
	}
	for _, k := range order {
		fmt.Fprintf(w, "%s at %s failed: %s\n", strings.Join(names[k], ", "), sizeString(k.mem), k.err)
	}
}

// writePhases prints, for each result whose VMM reported a timeline, that
// of its median run.
func writePhases(w io.Writer, results []Result) {
	for _, r := range results {
		s := medianSample(r)
		if s == nil || len(s.Phases) == 0 {
			continue
		}
		var parts []string
		for _, p := range s.Phases {
			parts = append(parts, fmt.Sprintf("%s %s", p.Name, secString(p.Seconds)))
		}
		fmt.Fprintf(w, "%s %s timeline (run ready in %s): %s\n", r.Method, sizeString(r.MemBytes), secString(s.ReadySeconds), strings.Join(parts, ", "))
	}
}

// medianSample is the run whose ready time is r's median (the lower middle
// one for an even count); nil without runs.
func medianSample(r Result) *Sample {
	if len(r.Samples) == 0 {
		return nil
	}
	idx := make([]int, len(r.Samples))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return r.Samples[idx[a]].ReadySeconds < r.Samples[idx[b]].ReadySeconds })
	return &r.Samples[idx[(len(idx)-1)/2]]
}

func secString(s float64) string {
	switch {
	case s <= 0:
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	default:
		return fmt.Sprintf("%.2fs", s)
	}
}

// ratioString shows a VS BOOT ratio; 0 means there was no boot to compare.
func ratioString(r float64) string {
	switch {
	case r <= 0:
		return "-"
	case r < 0.1:
		return fmt.Sprintf("%.3fx (1/%.0f)", r, 1/r)
	default:
		return fmt.Sprintf("%.2fx", r)
	}
}

// prefetchString is "USED/WASTED" pages, "-" when not measured.
func prefetchString(used, wasted int64) string {
	if used < 0 || wasted < 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", used, wasted)
}

func countString(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// sizeString formats a byte count in binary units; Unknown is "-".
func sizeString(n int64) string {
	if n < 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit {
			if f == float64(int64(f)) {
				return fmt.Sprintf("%d%s", int64(f), u)
			}
			return fmt.Sprintf("%.1f%s", f, u)
		}
	}
	return fmt.Sprintf("%.1fPiB", f/unit)
}
