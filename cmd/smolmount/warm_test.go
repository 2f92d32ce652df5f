package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/chunkstore"
	"github.com/smolvm/smolvm/format"
)

// The daemon reads a file bundle's working-set frames into its cache as it
// starts (every one of them, as its log says), and a bundle without a
// working set warms nothing.
func TestWarmWorkingSet(t *testing.T) {
	for _, tc := range []struct {
		name string
		ws   []format.PageRange
	}{
		{"working set", []format.PageRange{{Page: 300, Count: 40}, {Page: 5, Count: 3}, {Page: 1000, Count: 200}}},
		{"none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bundle, _ := testBundleWS(t, 8<<20, tc.ws)
			cb, err := chunkstore.Open(bundle, chunkstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			frames := len(cb.Manifest().WorkingSetFrames())
			cb.Close()
			if tc.ws != nil && frames < 3 {
				t.Fatalf("test working set spans %d frames, want several", frames)
			}
			d := startDaemon(t, bundle)
			want := fmt.Sprintf("working set: warmed %d frames", frames)
			deadline := time.Now().Add(20 * time.Second)
			for {
				log := d.stderr.String()
				if tc.ws == nil {
					if strings.Contains(log, "working set:") {
						t.Fatalf("no working set, but the daemon logged:\n%s", log)
					}
					return
				}
				if strings.Contains(log, want) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no %q in the daemon's log after 20 s:\n%s", want, log)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
