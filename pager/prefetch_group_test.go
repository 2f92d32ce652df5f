package pager

import (
	"fmt"
	"testing"

	"github.com/smolvm/smolvm/chunkstore"
)

// namedImage is an image only compared by identity.
type namedImage struct {
	chunkstore.Image
	name string
}

// TestGroupPrefetch: every run of one frame joins its job (one fetch), in
// the order frames are first needed; zero runs group up to maxZeroJob in
// place; the same frame number of another image is another job.
func TestGroupPrefetch(t *testing.T) {
	ra := &region{Region: Region{Artifact: "a"}, img: &namedImage{name: "a"}}
	rb := &region{Region: Region{Artifact: "b"}, img: &namedImage{name: "b"}}
	run := func(r *region, frame int32) *prefetchRun { return &prefetchRun{r: r, frame: frame, n: 1} }
	zero := func() *prefetchRun { return &prefetchRun{r: ra, zero: true, n: 1} }
	manyZero := make([]*prefetchRun, maxZeroJob+1)
	for i := range manyZero {
		manyZero[i] = zero()
	}
	for _, tc := range []struct {
		name string
		runs []*prefetchRun
		want string // job sizes, z for zero jobs
	}{
		{"empty", nil, "[]"},
		{"one frame, scattered pages", []*prefetchRun{run(ra, 3), run(ra, 3), run(ra, 3)}, "[3]"},
		{"frames in turn", []*prefetchRun{run(ra, 3), run(ra, 3), run(ra, 4), run(ra, 3)}, "[3 1]"},
		{"same frame number, other image", []*prefetchRun{run(ra, 3), run(rb, 3)}, "[1 1]"},
		{"zero between", []*prefetchRun{run(ra, 3), zero(), zero(), run(ra, 3)}, "[2 2z]"},
		{"zero runs apart", []*prefetchRun{zero(), run(ra, 3), zero()}, "[1z 1 1z]"},
		{"zero runs bounded", manyZero, fmt.Sprintf("[%dz 1z]", maxZeroJob)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs := groupPrefetch(tc.runs)
			got := "["
			total := 0
			for i, j := range jobs {
				if i > 0 {
					got += " "
				}
				got += fmt.Sprint(len(j.runs))
				if j.zero {
					got += "z"
					if j.done != nil {
						t.Errorf("zero job %d has a fetch channel", i)
					}
				} else if j.done == nil {
					t.Errorf("frame job %d has no fetch channel", i)
				}
				total += len(j.runs)
			}
			got += "]"
			if got != tc.want {
				t.Errorf("jobs %s, want %s", got, tc.want)
			}
			if total != len(tc.runs) {
				t.Errorf("jobs hold %d runs, plan had %d", total, len(tc.runs))
			}
		})
	}
}
