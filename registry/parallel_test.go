package registry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

func TestForEach(t *testing.T) {
	boom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		n       int
		failAt  int // -1: never
		want    error
		minDone int64
	}{
		{"all", context.Background(), 100, -1, nil, 100},
		{"none", context.Background(), 0, -1, nil, 0},
		{"error stops", context.Background(), 1000, 3, boom, 1},
		{"cancelled ctx", cancelled, 10, -1, context.Canceled, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var done atomic.Int64
			err := forEach(tc.ctx, tc.n, 4, func(ctx context.Context, i int) error {
				if i == tc.failAt {
					return boom
				}
				done.Add(1)
				return nil
			})
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if done.Load() < tc.minDone || (tc.failAt >= 0 && done.Load() == int64(tc.n-1)) {
				t.Fatalf("%d calls done", done.Load())
			}
		})
	}
}
