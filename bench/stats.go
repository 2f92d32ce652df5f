package bench

import (
	"math"
	"sort"
)

// Summary is the median, minimum and maximum of a set of runs.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Summarize returns the summary of xs; NaNs are left out. The median of an
// even count is the mean of the two middle values.
func Summarize(xs []float64) Summary {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}
	}
	sort.Float64s(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{N: n, Median: med, Min: v[0], Max: v[n-1]}
}

// medianCount is the median of the known (non-negative) counts, or Unknown
// when there are none.
func medianCount(xs []int64) int64 {
	var f []float64
	for _, x := range xs {
		if x >= 0 {
			f = append(f, float64(x))
		}
	}
	if len(f) == 0 {
		return Unknown
	}
	return int64(math.Round(Summarize(f).Median))
}
