package main

import (
	"os"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressBar draws one mpb bar on stderr when stderr is a terminal; on
// anything else it is silent. A nil *progressBar is valid and does nothing.
type progressBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

func newProgressBar(name string, total int64) *progressBar {
	if !isTerminal(os.Stderr) || total <= 0 {
		return nil
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.Percentage(), decor.Name(" "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f")),
	)
	return &progressBar{p: p, bar: bar}
}

// add advances the bar; safe from several goroutines.
func (b *progressBar) add(n int64) {
	if b != nil {
		b.bar.IncrInt64(n)
	}
}

// done finishes the bar (complete, or dropped on failure) and waits for the
// last frame to be drawn.
func (b *progressBar) done(ok bool) {
	if b == nil {
		return
	}
	if ok {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(false)
	}
	b.p.Wait()
}
