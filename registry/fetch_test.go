package registry

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smolvm/smolvm/registry/registrytest"
)

// faultProxy sits between the client and the registry and misbehaves on
// range requests (frame fetches) as mode says.
type faultProxy struct {
	mode  atomic.Value // string: "", "flaky", "hang", "404"
	seen  atomic.Int64
	hosts string
}

func startFaultProxy(t *testing.T, reg *registrytest.Registry) *faultProxy {
	u, _ := url.Parse("http://" + reg.Host)
	rp := httputil.NewSingleHostReverseProxy(u)
	fp := &faultProxy{}
	fp.mode.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			n := fp.seen.Add(1)
			switch fp.mode.Load().(string) {
			case "flaky":
				if n%2 == 1 {
					http.Error(w, "try again", http.StatusServiceUnavailable)
					return
				}
			case "hang":
				<-r.Context().Done()
				return
			case "404":
				http.NotFound(w, r)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fp.hosts = strings.TrimPrefix(srv.URL, "http://")
	return fp
}

// Frame fetches retry transient failures, give up after a bounded time on
// a registry that hangs, and do not retry a missing blob.
func TestFetchRetriesAndTimeouts(t *testing.T) {
	reg := startRegistry(t)
	dir := t.TempDir()
	bundle, _ := makeBundle(t, dir, 4<<20, 9, "")
	if _, err := Push(ctxT(t), bundle, reg.Host+"/vm:f", PushOptions{Remote: local}); err != nil {
		t.Fatal(err)
	}
	fp := startFaultProxy(t, reg)
	fetch := FetchOptions{Attempts: 3, Backoff: 10 * time.Millisecond, RequestTimeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		mode      string
		ok        bool
		requests  int64 // range requests the proxy sees for one frame
		errSubstr string
		notFound  bool
	}{
		{"flaky", true, 2, "", false},
		{"hang", false, 3, "deadline", false},
		{"404", false, 1, "404", true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			lz, err := Open(ctxT(t), fp.hosts+"/vm:f", LazyOptions{Remote: local, CacheDir: filepath.Join(t.TempDir(), "c"), Fetch: fetch})
			if err != nil {
				t.Fatal(err)
			}
			defer lz.Close()
			fp.mode.Store(tc.mode)
			defer fp.mode.Store("")
			fp.seen.Store(0)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = lz.Frame(ctx, 0)
			took := time.Since(start)
			t.Logf("%s: %v after %v, %d range requests", tc.mode, err, took, fp.seen.Load())
			if tc.ok != (err == nil) {
				t.Fatalf("want ok=%v, got %v", tc.ok, err)
			}
			if err != nil && (!strings.Contains(err.Error(), tc.errSubstr) || !strings.Contains(err.Error(), lz.Format().Frame(0).Digest.String())) {
				t.Fatalf("error should say %q and name frame 0: %v", tc.errSubstr, err)
			}
			if tc.notFound && !errors.Is(err, ErrNotFound) {
				t.Fatalf("want ErrNotFound: %v", err)
			}
			if got := fp.seen.Load(); got != tc.requests {
				t.Fatalf("%d range requests, want %d", got, tc.requests)
			}
			if took > 5*time.Second {
				t.Fatalf("took %v: fetches must be bounded", took)
			}
		})
	}
}
