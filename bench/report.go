package bench

import (
	"sort"
	"time"
)

// Unknown marks a count or size a method cannot measure (shown as "-").
const Unknown int64 = -1

// Report is what one `smolvm bench` run produced: the machine it ran on and
// one Result per method and guest memory size.
type Report struct {
	Env     Env      `json:"env"`
	Results []Result `json:"results"`
}

// Env describes where and how the figures were taken.
type Env struct {
	// Accel is "nested TCG" inside the lab VM (KVM on QEMU's software
	// emulation: 10-50x slower than hardware) or "hardware KVM".
	Accel string `json:"accel"`
	// PageCache is "cold" (caches dropped before every run) or "warm".
	PageCache string    `json:"page_cache"`
	Host      string    `json:"host"`      // CPU model, cores and host kernel
	Guest     string    `json:"guest"`     // guest kernel, initramfs, vCPUs
	Command   string    `json:"command"`   // the command line that produced the report
	Date      time.Time `json:"date"`      // when the run started
	Runs      int       `json:"runs"`      // runs per method and memory size
	Clones    int       `json:"clones"`    // clones started at once for the memory-per-clone figure (0: not measured)
	Notes     []string  `json:"notes"`     // caveats that apply to every figure
	Unmatched []string  `json:"unmatched"` // methods asked for that do not exist
	Skipped   []Skipped `json:"skipped"`   // methods not available here, and why
}

// Skipped is a method that could not run at all on this machine.
type Skipped struct {
	Method string `json:"method"`
	Reason string `json:"reason"`
}

// Result is one method at one guest memory size.
type Result struct {
	Method   string `json:"method"`
	MemBytes int64  `json:"mem_bytes"`
	// Ready is the time from starting the VMM process to the guest being
	// ready (the agent's ready notification, or a serial marker for QEMU),
	// in seconds over the runs.
	Ready Summary `json:"ready_s"`
	// VsBoot is this method's median ready time divided by the median of
	// "boot" at the same memory size (0 when boot did not run).
	VsBoot float64 `json:"vs_boot"`
	// RAMReadBytes is guest RAM read from the bundle or state before
	// ready (median; Unknown when the method does not say).
	RAMReadBytes int64 `json:"ram_read_bytes"`
	Faults       int64 `json:"faults"` // page faults served before ready (median; Unknown if not counted)
	// PrefetchUsed and PrefetchWasted: of the pages prefetched before the
	// vCPUs ran, those the guest touched by ready and those it did not
	// (medians; Unknown when not measured).
	PrefetchUsed   int64 `json:"prefetch_used"`
	PrefetchWasted int64 `json:"prefetch_wasted"`
	RSSBytes       int64 `json:"rss_bytes"` // VMM process RSS at ready (median)
	PSSBytes       int64 `json:"pss_bytes"` // VMM process PSS at ready (median)
	// SizeBytes is what the method starts from: kernel + initramfs for a
	// boot, the bundle for a restore, the migration stream for QEMU.
	SizeBytes int64    `json:"size_bytes"`
	Clones    *Clones  `json:"clones,omitempty"`
	Samples   []Sample `json:"samples"`
	Error     string   `json:"error,omitempty"` // why the method failed at this size
}

// Clones is the memory cost of N instances of one method running at once.
type Clones struct {
	N           int   `json:"n"`
	PSSPerClone int64 `json:"pss_per_clone_bytes"` // total PSS of the VMM processes (and shared daemons) / N
	RSSPerClone int64 `json:"rss_per_clone_bytes"`
}

// Sample is one run.
type Sample struct {
	ReadySeconds float64 `json:"ready_s"`
	RAMReadBytes int64   `json:"ram_read_bytes"`
	Faults       int64   `json:"faults"`
	// Prefetch: smolvm run's prefetched pages used and wasted (nil: not
	// measured).
	Prefetch *PrefetchUse `json:"prefetch,omitempty"`
	RSSBytes int64        `json:"rss_bytes"`
	PSSBytes int64        `json:"pss_bytes"`
	// Phases is the VMM's own timeline to ready (smolvm run: bundle
	// opened, daemon, memory, state restored, resumed, agent connected,
	// ready), seconds since it began.
	Phases []Phase `json:"phases,omitempty"`
}

// PrefetchUse is how many of the pages prefetched before the vCPUs ran the
// guest touched by ready (Used) and how many it did not (Wasted).
type PrefetchUse struct {
	Used   int64 `json:"used"`
	Wasted int64 `json:"wasted"`
}

// Phase is a point on a VMM's way to ready.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"s"`
}

// finish fills the summaries of r from its samples.
func (r *Result) finish() {
	ready := make([]float64, 0, len(r.Samples))
	var read, faults, rss, pss, used, wasted []int64
	for _, s := range r.Samples {
		if s.Prefetch != nil {
			used, wasted = append(used, s.Prefetch.Used), append(wasted, s.Prefetch.Wasted)
		}
		ready = append(ready, s.ReadySeconds)
		read = append(read, s.RAMReadBytes)
		faults = append(faults, s.Faults)
		rss = append(rss, s.RSSBytes)
		pss = append(pss, s.PSSBytes)
	}
	r.Ready = Summarize(ready)
	r.RAMReadBytes = medianCount(read)
	r.Faults = medianCount(faults)
	r.PrefetchUsed, r.PrefetchWasted = medianCount(used), medianCount(wasted)
	r.RSSBytes = medianCount(rss)
	r.PSSBytes = medianCount(pss)
}

// setRatios fills VsBoot of every result that has a boot result at its
// memory size.
func (rep *Report) setRatios() {
	boot := map[int64]float64{}
	for _, r := range rep.Results {
		if r.Method == MethodBoot && r.Error == "" && r.Ready.N > 0 {
			boot[r.MemBytes] = r.Ready.Median
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		r.VsBoot = 0
		if b := boot[r.MemBytes]; b > 0 && r.Error == "" && r.Ready.N > 0 {
			r.VsBoot = r.Ready.Median / b
		}
	}
}

// sortResults orders results by memory size, then by the method order.
func (rep *Report) sortResults() {
	sort.SliceStable(rep.Results, func(i, j int) bool {
		a, b := rep.Results[i], rep.Results[j]
		if a.MemBytes != b.MemBytes {
			return a.MemBytes < b.MemBytes
		}
		return methodIndex(a.Method) < methodIndex(b.Method)
	})
}
