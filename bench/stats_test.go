package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{2.5}, Summary{N: 1, Median: 2.5, Min: 2.5, Max: 2.5}},
		{"odd unsorted", []float64{3, 1, 2}, Summary{N: 3, Median: 2, Min: 1, Max: 3}},
		{"even: mean of middle two", []float64{4, 1, 3, 2}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4}},
		{"NaN left out", []float64{math.NaN(), 5, 1}, Summary{N: 2, Median: 3, Min: 1, Max: 5}},
		{"all NaN", []float64{math.NaN()}, Summary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(tc.in); got != tc.want {
				t.Fatalf("Summarize(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestMedianCount(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		want int64
	}{
		{nil, Unknown},
		{[]int64{Unknown, Unknown}, Unknown},
		{[]int64{Unknown, 10, 30}, 20},
		{[]int64{7, 1, 100}, 7},
	} {
		if got := medianCount(tc.in); got != tc.want {
			t.Errorf("medianCount(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestResultFinishAndRatios(t *testing.T) {
	rep := &Report{Results: []Result{
		{Method: MethodUffd, MemBytes: 1 << 30, Samples: []Sample{
			{ReadySeconds: 0.2, RAMReadBytes: 100, Faults: 5, RSSBytes: 10, PSSBytes: 8, Prefetch: &PrefetchUse{Used: 10, Wasted: 4}},
			{ReadySeconds: 0.4, RAMReadBytes: 300, Faults: 7, RSSBytes: 30, PSSBytes: 6, Prefetch: &PrefetchUse{Used: 20, Wasted: 2}}}},
		{Method: MethodBoot, MemBytes: 1 << 30, Samples: []Sample{{ReadySeconds: 3, RAMReadBytes: Unknown, Faults: Unknown}}},
		{Method: MethodBoot, MemBytes: 256 << 20, Samples: []Sample{{ReadySeconds: 2}}},
		{Method: MethodQEMUBoot, MemBytes: 256 << 20, Samples: []Sample{{ReadySeconds: 4}}},
		{Method: MethodMmap, MemBytes: 512 << 20, Samples: []Sample{{ReadySeconds: 1}}}, // no boot at this size
		{Method: MethodEager, MemBytes: 256 << 20, Error: "boom"},
	}}
	for i := range rep.Results {
		rep.Results[i].finish()
	}
	rep.sortResults()
	rep.setRatios()
	var order []string
	for _, r := range rep.Results {
		order = append(order, sizeString(r.MemBytes)+" "+r.Method)
	}
	wantOrder := []string{"256MiB boot", "256MiB eager", "256MiB qemu-boot", "512MiB mmap", "1GiB boot", "1GiB uffd"}
	if len(order) != len(wantOrder) {
		t.Fatalf("order %v, want %v", order, wantOrder)
	}
	for i := range order {
		if order[i] != wantOrder[i] {
			t.Fatalf("order %v, want %v", order, wantOrder)
		}
	}
	get := func(m string, mem int64) Result {
		for _, r := range rep.Results {
			if r.Method == m && r.MemBytes == mem {
				return r
			}
		}
		t.Fatalf("no %s at %d", m, mem)
		return Result{}
	}
	u := get(MethodUffd, 1<<30)
	if math.Abs(u.Ready.Median-0.3) > 1e-9 {
		t.Errorf("uffd median %v, want 0.3", u.Ready.Median)
	}
	if math.Abs(u.VsBoot-0.1) > 1e-9 {
		t.Errorf("uffd vs boot %v, want 0.1", u.VsBoot)
	}
	if u.RAMReadBytes != 200 || u.Faults != 6 || u.RSSBytes != 20 || u.PSSBytes != 7 || u.PrefetchUsed != 15 || u.PrefetchWasted != 3 {
		t.Errorf("uffd medians %+v", u)
	}
	if r := get(MethodBoot, 1<<30); r.PrefetchUsed != Unknown || r.PrefetchWasted != Unknown {
		t.Errorf("boot: prefetch used/wasted %d/%d, want unknown", r.PrefetchUsed, r.PrefetchWasted)
	}
	if r := get(MethodQEMUBoot, 256<<20); r.VsBoot != 2 {
		t.Errorf("qemu-boot vs boot %v, want 2", r.VsBoot)
	}
	if r := get(MethodMmap, 512<<20); r.VsBoot != 0 {
		t.Errorf("mmap without a boot at its size: vs boot %v, want 0", r.VsBoot)
	}
	if r := get(MethodEager, 256<<20); r.VsBoot != 0 {
		t.Errorf("failed method: vs boot %v, want 0", r.VsBoot)
	}
	if r := get(MethodBoot, 1<<30); r.RAMReadBytes != Unknown || r.VsBoot != 1 {
		t.Errorf("boot: %+v", r)
	}
}
