package fusefs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smolvm/smolvm/format"
	"golang.org/x/sys/unix"
)

const framePages = 64 // 256 KiB frames in the fake

func smallSpec() fakeSpec {
	return fakeSpec{
		FramePages: framePages,
		Images: []fakeImageSpec{
			{Name: "memory", Size: 8<<20 + 1234, Seed: 1},
			{Name: "kernel", Size: 3<<20 + 17, Seed: 2},
			{Name: "initrd", Size: 0, Seed: 3},
			{Name: "disk/root", Size: 5 << 20, Seed: 4},
			{Name: "disk/data", Size: 4096 * 3, Seed: 5},
		},
		Files: map[string]string{"config.json": `{"vcpus":2}` + "\n", "state": "saved"},
	}
}

func TestTreeAndSizes(t *testing.T) { backends(t, smallSpec(), testTreeAndSizes) }

func testTreeAndSizes(t *testing.T, spec fakeSpec) {
	s := serve(t, spec, nil)
	var names []string
	err := filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.dir, p)
		names = append(names, rel)
		wantMode := os.FileMode(0o444)
		if fi.IsDir() {
			wantMode = os.ModeDir | 0o555
		}
		if rel != StatsName && fi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", rel, fi.Mode(), wantMode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".", StatsName, ConfigName, "disk"}
	for _, is := range spec.Images {
		want = append(want, is.Name)
	}
	for name := range spec.Files {
		if name != ConfigName {
			want = append(want, name)
		}
	}
	sort.Strings(want)
	sort.Strings(names)
	if !slicesEqual(names, want) {
		t.Errorf("tree %q, want %q", names, want)
	}
	for _, is := range spec.Images {
		fi, err := os.Stat(filepath.Join(s.dir, is.Name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != is.Size {
			t.Errorf("%s: size %d, want %d", is.Name, fi.Size(), is.Size)
		}
	}
	m, err := FindMount(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.FSType != "fuse."+Name || m.Source != Name {
		t.Errorf("mount type %q source %q, want fuse.%s and %s", m.FSType, m.Source, Name, Name)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadsMatchSource(t *testing.T) {
	backends(t, smallSpec(), func(t *testing.T, spec fakeSpec) {
		for _, copyReads := range []bool{false, true} {
			t.Run(fmt.Sprintf("copy=%v", copyReads), func(t *testing.T) {
				testReadsMatchSource(t, spec, &Options{CopyReads: copyReads, MaxRead: 256 << 10})
			})
		}
	})
}

func testReadsMatchSource(t *testing.T, spec fakeSpec, opts *Options) {
	s := serve(t, spec, opts)
	for _, is := range spec.Images {
		t.Run(filepath.Base(is.Name), func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(s.dir, is.Name))
			if err != nil {
				t.Fatal(err)
			}
			if want := expectedBytes(is, 0, is.Size); !bytes.Equal(got, want) {
				t.Fatalf("whole file differs (got %d bytes, want %d) at %d", len(got), len(want), firstDiff(got, want))
			}
			f, err := os.Open(filepath.Join(s.dir, is.Name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(is.Seed, 7))
			cases := []struct{ off, n int64 }{{0, 1}, {is.Size - 1, 10}, {is.Size, 10}, {4095, 2}, {is.Size + 1<<20, 5}}
			for range 50 {
				cases = append(cases, struct{ off, n int64 }{rng.Int64N(is.Size + 1), rng.Int64N(3 << 20)})
			}
			for _, c := range cases {
				if c.off < 0 {
					continue
				}
				buf := make([]byte, c.n)
				n, err := f.ReadAt(buf, c.off)
				if err != nil && err != io.EOF {
					t.Fatalf("ReadAt(%d, %d): %v", c.off, c.n, err)
				}
				if want := expectedBytes(is, c.off, c.n); !bytes.Equal(buf[:n], want) {
					t.Fatalf("ReadAt(%d, %d): %d bytes differ from source at %d", c.off, c.n, n, firstDiff(buf[:n], want))
				}
			}
		})
	}
	for name, content := range spec.Files {
		got, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil || string(got) != content {
			t.Errorf("%s: %q, %v; want %q", name, got, err, content)
		}
	}
	if spec.Real {
		got, err := os.ReadFile(filepath.Join(s.dir, ConfigName))
		var cfg format.Config
		if err == nil {
			err = json.Unmarshal(got, &cfg)
		}
		if err != nil || cfg.Arch != "amd64" || cfg.VCPUs != 1 {
			t.Errorf("%s: %q, %v; want the manifest's config", ConfigName, got, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestReadOnly(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC} {
		f, err := os.OpenFile(filepath.Join(s.dir, "memory"), flag, 0)
		if err == nil {
			f.Close()
			t.Errorf("open flags %#x: no error", flag)
		} else if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("open flags %#x: %v, want EROFS", flag, err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.dir, "new"), nil, 0o644); err == nil {
		t.Error("creating a file succeeded")
	}
}

// TestMmapPrivate maps memory MAP_PRIVATE (as a VMM does), checks every byte,
// writes to the private copy and checks the file is untouched.
func TestMmapPrivate(t *testing.T) { backends(t, smallSpec(), testMmapPrivate) }

func testMmapPrivate(t *testing.T, spec fakeSpec) {
	s := serve(t, spec, nil)
	is := spec.Images[0]
	f, err := os.Open(filepath.Join(s.dir, is.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(is.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// A fault on a dead mount must fail this test, not crash the binary.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	want := expectedBytes(is, 0, is.Size)
	if !bytes.Equal(mem, want) {
		t.Fatalf("mapping differs from source at %d", firstDiff(mem, want))
	}
	for i := 0; i < len(mem); i += 4096 * 7 {
		mem[i] ^= 0xff
	}
	got, err := os.ReadFile(filepath.Join(s.dir, is.Name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("a private write reached the file at %d", firstDiff(got, want))
	}
}

func TestCorruptFrameEIO(t *testing.T) {
	spec := smallSpec()
	spec.Images[0].Corrupt = []int{3}
	backends(t, spec, testCorruptFrameEIO)
}

func testCorruptFrameEIO(t *testing.T, spec fakeSpec) {
	s := serve(t, spec, nil)
	is := spec.Images[0]
	img := newFakeImage(is, framePages, 0, &fakeStore{})
	var badPage, goodPage int64 = -1, -1
	for p := range img.ord {
		if e, ok := img.Locate(int64(p)); ok {
			if e.Frame == 3 && badPage < 0 {
				badPage = int64(p)
			}
			if e.Frame == 6 && goodPage < 0 {
				goodPage = int64(p)
			}
		}
	}
	f, err := os.Open(filepath.Join(s.dir, is.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
	buf := make([]byte, 4096)
	for try := range 2 { // twice: a failed frame is not cached as good
		_, err = withTimeout(t, 10*time.Second, "read corrupt", func() (int, error) { return f.ReadAt(buf, badPage*4096) })
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("try %d: read of page %d in corrupt frame 3: %v, want EIO", try, badPage, err)
		}
	}
	if _, err := f.ReadAt(buf, goodPage*4096); err != nil {
		t.Fatalf("read of page %d in good frame 6: %v", goodPage, err)
	}
	if want := expectedBytes(is, goodPage*4096, 4096); !bytes.Equal(buf, want) {
		t.Fatal("good frame read wrong bytes")
	}
	fst, st := readStats(t, s.dir)
	if fst.ReadErrors < 1 || st.VerifyFailed < 1 {
		t.Errorf("stats after a corrupt frame: fs %+v store %+v, want read_errors and verify_failures >= 1", fst, st)
	}
}

func TestStatsFresh(t *testing.T) {
	s := serve(t, smallSpec(), nil)
	fst0, st0 := readStats(t, s.dir)
	if _, err := os.ReadFile(filepath.Join(s.dir, "kernel")); err != nil {
		t.Fatal(err)
	}
	fst1, st1 := readStats(t, s.dir)
	if fst1.Reads <= fst0.Reads || fst1.BytesRead-fst0.BytesRead != 3<<20+17 || st1.FramesFetched <= st0.FramesFetched {
		t.Errorf(".stats not fresh: before fs %+v store %+v, after fs %+v store %+v", fst0, st0, fst1, st1)
	}
}

// TestRandomPageReadsFetchLittle: 300 random page reads of a 512 MiB image
// fetch only the frames they touch, as .stats shows.
func TestRandomPageReadsFetchLittle(t *testing.T) {
	spec := fakeSpec{FramePages: framePages, Images: []fakeImageSpec{{Name: "memory", Size: 512 << 20, Seed: 9}}}
	backends(t, spec, testRandomPageReadsFetchLittle)
}

func testRandomPageReadsFetchLittle(t *testing.T, spec fakeSpec) {
	const size = 512 << 20
	s := serve(t, spec, nil)
	f, err := os.Open(filepath.Join(s.dir, "memory"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	const reads = 300
	for range reads {
		p := rng.Int64N(size / 4096)
		if _, err := f.ReadAt(buf, p*4096); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf, expectedBytes(spec.Images[0], p*4096, 4096)) {
			t.Fatalf("page %d differs", p)
		}
	}
	fst, st := readStats(t, s.dir)
	// Each 4 KiB read reaches the daemon as one READ of at most
	// max_read_bytes (kernel readahead), which spans at most
	// ceil(max/frame)+1 frames.
	frameBytes := int64(framePages * 4096)
	perRead := (fst.MaxReadBytes+frameBytes-1)/frameBytes + 1
	bound := reads * perRead * frameBytes
	t.Logf("300 random page reads of 512 MiB: %d frames, %d bytes fetched (%.2f%%), %d READs, max READ %d",
		st.FramesFetched, st.BytesFetched, 100*float64(st.BytesFetched)/size, fst.Reads, fst.MaxReadBytes)
	if st.BytesFetched > bound || st.BytesFetched > size/5 {
		t.Errorf("fetched %d bytes, want <= %d (300 reads x %d frames x %d) and <= 20%% of %d", st.BytesFetched, bound, perRead, frameBytes, size)
	}
}

// TestConcurrentReaders: 32 readers of one mount in different orders get
// every byte right and each frame is fetched once.
func TestConcurrentReaders(t *testing.T) {
	spec := fakeSpec{FramePages: framePages, FetchDelay: time.Millisecond,
		Images: []fakeImageSpec{{Name: "memory", Size: 32 << 20, Seed: 11}}}
	backends(t, spec, testConcurrentReaders)
}

func testConcurrentReaders(t *testing.T, spec fakeSpec) {
	s := serve(t, spec, nil)
	is := spec.Images[0]
	want := expectedBytes(is, 0, is.Size)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for r := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Open(filepath.Join(s.dir, "memory"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			const chunk = 1 << 20
			n := int(is.Size / chunk)
			buf := make([]byte, chunk)
			for i := range n {
				off := int64((i*7+r)%n) * chunk
				if _, err := f.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+chunk]) {
					errs <- errors.New("reader got wrong bytes")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, st := readStats(t, s.dir)
	frames := newFakeImage(is, framePages, 0, &fakeStore{}).nframes
	if st.FramesFetched != int64(frames) {
		t.Errorf("fetched %d frames, want each of %d once", st.FramesFetched, frames)
	}
}

// TestZeroPagesFetchNothing: reading zero pages on a fresh mount returns
// zeros and fetches no frame.
func TestZeroPagesFetchNothing(t *testing.T) {
	backends(t, smallSpec(), func(t *testing.T, spec fakeSpec) {
		s := serve(t, spec, nil)
		is := spec.Images[0]
		f, err := os.Open(filepath.Join(s.dir, is.Name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)
		zeroPages := 0
		for p := int64(0); p < is.Size/4096 && zeroPages < 20; p++ {
			// Pages deep inside a zero run, so no readahead reaches data.
			if !pageIsZero(is.Seed, p-1) || !pageIsZero(is.Seed, p) || !pageIsZero(is.Seed, p+1) {
				continue
			}
			buf := make([]byte, 4096)
			buf[0] = 1
			if _, err := f.ReadAt(buf, p*4096); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, make([]byte, 4096)) {
				t.Fatalf("zero page %d read non-zero bytes", p)
			}
			zeroPages++
		}
		fst, st := readStats(t, s.dir)
		if zeroPages == 0 || fst.Reads == 0 {
			t.Fatalf("read %d zero pages in %d READs: the test read nothing", zeroPages, fst.Reads)
		}
		if st.FramesFetched != 0 {
			t.Errorf("reading %d zero pages fetched %d frames, want 0", zeroPages, st.FramesFetched)
		}
		if fst.ZeroBytes < int64(zeroPages)*4096 {
			t.Errorf("fs zero_bytes %d, want >= %d", fst.ZeroBytes, zeroPages*4096)
		}
	})
}
