package chunkstore

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smolvm/smolvm/format"
)

// Many goroutines putting overlapping frames: every frame ends up whole,
// once, and no temp file is left.
func TestDirStoreConcurrentPut(t *testing.T) {
	fake, infos, datas := makeFrames(12, 3)
	s, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(infos))
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range infos {
				f := infos[(i+w)%len(infos)]
				if err := s.Put(ctxT(t), f.Digest, fake.frames[f.Digest], f.PageDigests); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, f := range infos {
		raw, err := s.Get(ctxT(t), f.Digest)
		if err != nil {
			t.Fatal(err)
		}
		b, err := format.DecodeFrame(f, raw, nil)
		if err != nil || string(b) != string(datas[i]) {
			t.Fatalf("frame %d: %v", i, err)
		}
		if ok, _ := s.Has(ctxT(t), f.Digest); !ok {
			t.Fatalf("Has(%s) = false", f.Digest)
		}
	}
	n := 0
	if err := s.Walk(ctxT(t), func(sf StoredFrame) error {
		n++
		if len(sf.Pages) != 3 || sf.Length == 0 {
			t.Errorf("walk: %+v", sf)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(infos) {
		t.Fatalf("Walk found %d frames, want %d", n, len(infos))
	}
	filepath.WalkDir(s.Dir(), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && (strings.Contains(de.Name(), ".tmp") || strings.Contains(de.Name(), ".link")) {
			t.Errorf("temp file left: %s", p)
		}
		return nil
	})
}

func TestDirStoreErrors(t *testing.T) {
	fake, infos, _ := makeFrames(1, 2)
	s, _ := OpenDir(t.TempDir())
	var missing format.Digest
	if _, err := s.Get(ctxT(t), missing); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	f := infos[0]
	if err := s.Put(ctxT(t), missing, fake.frames[f.Digest], f.PageDigests); err == nil {
		t.Fatal("Put accepted page digests that do not give the frame digest")
	}
	if _, err := s.Pages(f.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Pages missing: %v", err)
	}
}
