package chunkstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
)

// fakeStore is an in-memory Store that counts Gets, can hold them at a gate
// and can serve bad bytes a set number of times.
type fakeStore struct {
	mu     sync.Mutex
	frames map[format.Digest][]byte
	gets   atomic.Int64
	gate   chan struct{} // when set, Get waits for it to close
	bad    int           // the next bad Gets return damaged bytes
}

func (s *fakeStore) Get(ctx context.Context, d format.Digest) ([]byte, error) {
	s.gets.Add(1)
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.frames[d]
	if !ok {
		return nil, fmt.Errorf("fake: %s: %w", d, ErrNotFound)
	}
	b = append([]byte(nil), b...)
	if s.bad > 0 {
		s.bad--
		b[len(b)/2] ^= 0xff
	}
	return b, nil
}

func (s *fakeStore) Has(ctx context.Context, d format.Digest) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.frames[d]
	return ok, nil
}

// makeFrames returns n frames of pages pages each, in a fake store.
func makeFrames(n, pages int) (*fakeStore, []*format.FrameInfo, [][]byte) {
	s := &fakeStore{frames: make(map[format.Digest][]byte)}
	var infos []*format.FrameInfo
	var datas [][]byte
	for i := 0; i < n; i++ {
		data := randomBytes(pages*format.PageSize, uint64(100+i))
		f := &format.FrameInfo{}
		for p := 0; p < pages; p++ {
			f.PageDigests = append(f.PageDigests, format.PageDigest(data[p*format.PageSize:]))
		}
		f.Digest = format.FrameDigest(f.PageDigests)
		raw := format.EncodeFrame(nil, data)
		f.Length = int64(len(raw))
		s.frames[f.Digest] = raw
		infos = append(infos, f)
		datas = append(datas, data)
	}
	return s, infos, datas
}

func TestCacheSingleflight(t *testing.T) {
	s, infos, datas := makeFrames(1, 4)
	s.gate = make(chan struct{})
	c := NewCache(s, CacheOptions{MaxBytes: 1 << 20})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.Frame(ctxT(t), infos[0])
			if err == nil && string(b) != string(datas[0]) {
				err = errors.New("wrong bytes")
			}
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them pile up on the gate
	close(s.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if g := s.gets.Load(); g != 1 {
		t.Fatalf("16 concurrent requests made %d fetches, want 1", g)
	}
	st := c.Stats()
	if st.CacheMisses+st.CacheHits < 1 || st.FramesFetched != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCacheBoundAndSpill(t *testing.T) {
	s, infos, datas := makeFrames(6, 2)
	frameBytes := int64(2 * format.PageSize)
	spill := t.TempDir()
	c := NewCache(s, CacheOptions{MaxBytes: 2 * frameBytes, SpillDir: spill})
	for round := 0; round < 2; round++ {
		for i, f := range infos {
			b, err := c.Frame(ctxT(t), f)
			if err != nil || string(b) != string(datas[i]) {
				t.Fatalf("round %d frame %d: %v", round, i, err)
			}
			if st := c.Stats(); st.CachedBytes > 2*frameBytes {
				t.Fatalf("cache holds %d bytes, bound %d", st.CachedBytes, 2*frameBytes)
			}
		}
	}
	st := c.Stats()
	if st.FramesFetched != 6 || st.SpillHits == 0 {
		t.Fatalf("second round should come from the spill dir: %+v", st)
	}
	// A damaged spill file is re-verified, dropped and refetched.
	ents, _ := os.ReadDir(spill)
	if len(ents) == 0 {
		t.Fatal("nothing spilled")
	}
	p := spill + "/" + ents[0].Name()
	os.WriteFile(p, make([]byte, frameBytes), 0o644)
	d, _ := format.ParseDigest(ents[0].Name())
	for i, f := range infos {
		if f.Digest == d {
			c2 := NewCache(s, CacheOptions{MaxBytes: frameBytes, SpillDir: spill})
			b, err := c2.Frame(ctxT(t), f)
			if err != nil || string(b) != string(datas[i]) {
				t.Fatalf("damaged spill file: %v", err)
			}
		}
	}
}

func TestCacheFailureNotRemembered(t *testing.T) {
	s, infos, datas := makeFrames(1, 3)
	s.bad = 1
	c := NewCache(s, CacheOptions{MaxBytes: 1 << 20})
	_, err := c.Frame(ctxT(t), infos[0])
	var fe *format.FrameError
	if !errors.Is(err, ErrCorrupt) || !errors.As(err, &fe) || fe.Expected != infos[0].Digest {
		t.Fatalf("bad frame: %v", err)
	}
	b, err := c.Frame(ctxT(t), infos[0])
	if err != nil || string(b) != string(datas[0]) {
		t.Fatalf("retry: %v", err)
	}
	if st := c.Stats(); st.VerifyFailures != 1 || st.FramesFetched != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// A waiter whose own context ends stops waiting; the fetch goes on for
// the others.
func TestCacheWaiterContext(t *testing.T) {
	s, infos, _ := makeFrames(1, 1)
	s.gate = make(chan struct{})
	c := NewCache(s, CacheOptions{MaxBytes: 1 << 20})
	done := make(chan error, 1)
	go func() { _, err := c.Frame(ctxT(t), infos[0]); done <- err }()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Frame(ctx, infos[0]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter: %v", err)
	}
	close(s.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
