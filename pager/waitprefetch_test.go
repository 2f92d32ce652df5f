package pager

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/pager/internal/fakeimage"
)

// TestWaitPrefetch: wait_prefetch answers once the prefetch list is worked
// through (PrefetchDone, with its time), and when its wait runs out first
// (a frame that never comes) it answers anyway, PrefetchDone false, while
// the connection keeps serving other requests. This process never touches
// the registered memory (the daemon serves it): only the daemon copies.
func TestWaitPrefetch(t *testing.T) {
	const pages = 64
	for _, tc := range []struct {
		name     string
		stall    bool
		wait     time.Duration
		wantDone bool
	}{
		{"done", false, 20 * time.Second, true},
		{"stalled frame", true, 300 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testImageConfig(pages)
			im := fakeimage.New(cfg)
			im.SetStall(tc.stall)
			sock := testServer(t, &Server{Open: openOnly(im), FrameTimeout: 20 * time.Second})
			mem, err := unix.Mmap(-1, 0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			ws := &WorkingSet{Version: WorkingSetVersion, PageSize: PageSize,
				Ranges: []PageRange{{Artifact: "memory", Page: 0, Count: pages}}}
			c, fd, err := Attach(ctx, sock, []Region{{HostAddr: HostAddr(mem), Length: pages * PageSize, Artifact: "memory"}},
				RegisterOptions{Prefetch: ws})
			if err != nil {
				unix.Munmap(mem)
				t.Fatal(err)
			}
			t.Cleanup(func() {
				im.SetStall(false)
				c.Close()
				unix.Close(fd)
				unix.Munmap(mem)
			})
			start := time.Now()
			st, err := c.WaitPrefetch(ctx, tc.wait)
			if err != nil {
				t.Fatal(err)
			}
			if st.PrefetchDone != tc.wantDone {
				t.Fatalf("PrefetchDone %v after %v, want %v: %+v", st.PrefetchDone, time.Since(start), tc.wantDone, st)
			}
			if tc.wantDone && (st.PrefetchTime <= 0 || st.PrefetchedPages == 0) {
				t.Fatalf("done, but prefetch time %v and %d pages prefetched", st.PrefetchTime, st.PrefetchedPages)
			}
			if !tc.wantDone && time.Since(start) < tc.wait {
				t.Fatalf("answered after %v, before its wait of %v ran out", time.Since(start), tc.wait)
			}
			if _, err := c.Stats(ctx); err != nil {
				t.Fatalf("stats after wait_prefetch: %v", err)
			}
		})
	}
}
