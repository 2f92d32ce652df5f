package bench

import (
	"fmt"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlot draws rep's median ready times as grouped bars (one group per
// method, one bar per memory size) and saves it to
// path; the extension picks the format (.svg or .png).
func WritePlot(path string, rep *Report) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".svg" && ext != ".png" {
		return fmt.Errorf("bench: plot %s: want a .svg or .png file", path)
	}
	var methods []string
	var mems []int64
	seenM, seenS := map[string]bool{}, map[int64]bool{}
	for _, r := range rep.Results {
		if !seenM[r.Method] {
			seenM[r.Method] = true
			methods = append(methods, r.Method)
		}
		if !seenS[r.MemBytes] {
			seenS[r.MemBytes] = true
			mems = append(mems, r.MemBytes)
		}
	}
	if len(methods) == 0 {
		return fmt.Errorf("bench: plot %s: no results to draw", path)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("smolvm bench: time to ready (%s, page cache %s)", rep.Env.Accel, rep.Env.PageCache)
	p.Y.Label.Text = "seconds to ready (median)"
	p.Y.Min = 0
	w := vg.Points(14)
	for i, mem := range mems {
		vals := make(plotter.Values, len(methods))
		for j, m := range methods {
			for _, r := range rep.Results {
				if r.Method == m && r.MemBytes == mem && r.Error == "" {
					vals[j] = r.Ready.Median
				}
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return fmt.Errorf("bench: plot: %w", err)
		}
		bars.LineStyle.Width = vg.Length(0)
		bars.Color = plotutil.Color(i)
		bars.Offset = w * vg.Length(float64(i)-float64(len(mems)-1)/2)
		p.Add(bars)
		p.Legend.Add("guest RAM "+sizeString(mem), bars)
	}
	p.Legend.Top = true
	p.NominalX(methods...)
	width := vg.Length(len(methods)*len(mems))*w + 2*vg.Inch
	if width < 7*vg.Inch {
		width = 7 * vg.Inch
	}
	if err := p.Save(width, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("bench: plot %s: %w", path, err)
	}
	return nil
}
