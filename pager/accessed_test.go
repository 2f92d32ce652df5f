package pager

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/format"
	"github.com/smolvm/smolvm/internal/pagemap"
)

func TestClassify(t *testing.T) {
	const pfn = 0x1234
	for _, tc := range []struct {
		name         string
		entry, flags uint64
		activeBefore bool
		want         pageState
	}{
		{"none", 0, 0, false, pageAbsent},
		{"swapped", pmSwapped | 0x55, 0, false, pageAbsent},
		{"present no page", pmPresent | pfn, kpfNoPage, false, pageAbsent},
		{"referenced", pmPresent | pfn, kpfReferenced, false, pageUsed},
		{"referenced and active before", pmPresent | pfn, kpfReferenced | kpfActive, true, pageUsed},
		{"active since mark", pmPresent | pfn, kpfActive, false, pageUsed},
		{"active before, untouched", pmPresent | pfn, kpfActive, true, pageWasted},
		{"present untouched", pmPresent | pfn, 1 << 5, false, pageWasted},
		{"zero page", pmPresent | pfn, kpfZeroPage | kpfReferenced, false, pageZero},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.entry, tc.flags, tc.activeBefore); got != tc.want {
				t.Fatalf("classify(%#x, %#x, %v) = %d, want %d", tc.entry, tc.flags, tc.activeBefore, got, tc.want)
			}
		})
	}
}

func TestHostRuns(t *testing.T) {
	const ps = format.PageSize
	mem := format.ArtifactMemory
	regions := []Region{
		{HostAddr: 0x100000, Length: 16 * ps, Artifact: mem, Offset: 0},
		{HostAddr: 0x900000, Length: 8 * ps, Artifact: mem, Offset: 16 * ps},
	}
	for _, tc := range []struct {
		name   string
		ranges []PageRange
		want   []hostRun
	}{
		{"nil", nil, nil},
		{"one", []PageRange{{mem, 2, 3}}, []hostRun{{0x100000 + 2*ps, 3}}},
		{"across regions", []PageRange{{mem, 14, 4}}, []hostRun{{0x100000 + 14*ps, 2}, {0x900000, 2}}},
		{"past the end", []PageRange{{mem, 22, 10}}, []hostRun{{0x900000 + 6*ps, 2}}},
		{"duplicates and overlap merge", []PageRange{{mem, 5, 2}, {mem, 1, 2}, {mem, 5, 1}, {mem, 6, 3}, {mem, 3, 1}},
			[]hostRun{{0x100000 + 1*ps, 3}, {0x100000 + 5*ps, 4}}},
		{"adjacent merge", []PageRange{{mem, 4, 2}, {mem, 2, 2}}, []hostRun{{0x100000 + 2*ps, 4}}},
		{"other artifact", []PageRange{{"disk-root", 2, 3}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ws *WorkingSet
			if tc.ranges != nil {
				ws = &WorkingSet{Version: WorkingSetVersion, PageSize: ps, Ranges: tc.ranges}
			}
			if got := hostRuns(ws, regions); !slices.Equal(got, tc.want) {
				t.Fatalf("hostRuns = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPlanSpans(t *testing.T) {
	for _, tc := range []struct {
		name string
		pfns []uint64
		want []pfnSpan
	}{
		{"none", nil, nil},
		{"dup", []uint64{7, 7, 7}, []pfnSpan{{7, 1}}},
		{"near merge", []uint64{300, 10, 10 + kpfGap}, []pfnSpan{{10, kpfGap + 1}, {300, 1}}},
		{"gap splits", []uint64{10, 10 + kpfGap + 2}, []pfnSpan{{10, 1}, {10 + kpfGap + 2, 1}}},
		{"span bounded", []uint64{0, 40, 80}, []pfnSpan{{0, 81}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planSpans(slices.Clone(tc.pfns)); !slices.Equal(got, tc.want) {
				t.Fatalf("planSpans(%v) = %v, want %v", tc.pfns, got, tc.want)
			}
		})
	}
	// A long dense run is cut at kpfMaxSpan entries.
	var dense []uint64
	for p := range uint64(kpfMaxSpan + 10) {
		dense = append(dense, p)
	}
	if got := planSpans(dense); len(got) != 2 || got[0] != (pfnSpan{0, kpfMaxSpan}) || got[1] != (pfnSpan{kpfMaxSpan, 10}) {
		t.Fatalf("dense run: %v", got)
	}
}

func TestPlanWindows(t *testing.T) {
	const ps = format.PageSize
	for _, tc := range []struct {
		name string
		runs []hostRun
		want [][2]int64 // per window: runs, pages
	}{
		{"none", nil, nil},
		{"one", []hostRun{{ps, 3}}, [][2]int64{{1, 3}}},
		{"near", []hostRun{{ps, 3}, {(4 + pmGap) * ps, 2}}, [][2]int64{{2, 3 + pmGap + 2}}},
		{"far", []hostRun{{ps, 3}, {(5 + pmGap) * ps, 2}}, [][2]int64{{1, 3}, {1, 2}}},
		{"bounded", []hostRun{{0, pmMaxWindow - 1}, {pmMaxWindow * ps, 2}}, [][2]int64{{1, pmMaxWindow - 1}, {1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][2]int64
			for _, w := range planWindows(tc.runs) {
				got = append(got, [2]int64{int64(len(w.runs)), w.pages})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("planWindows(%v) = %v, want %v", tc.runs, got, tc.want)
			}
		})
	}
}

// fakeProc is a sparse /proc/self/pagemap or /proc/kpageflags: 64-bit
// entries by index; unset entries read as 0 up to limit (entries).
type fakeProc struct {
	e     map[uint64]uint64
	limit uint64
	reads int
}

func (f *fakeProc) ReadAt(b []byte, off int64) (int, error) {
	f.reads++
	if off%8 != 0 || len(b)%8 != 0 {
		return 0, errors.New("fake: unaligned read")
	}
	for i := 0; i < len(b); i += 8 {
		idx := uint64(off)/8 + uint64(i/8)
		if idx >= f.limit {
			return i, io.EOF
		}
		binary.LittleEndian.PutUint64(b[i:], f.e[idx])
	}
	return len(b), nil
}

func TestAccessTrackerFake(t *testing.T) {
	const base = 0x7f0000000000
	vpn := uint64(base / format.PageSize)
	pm := &fakeProc{e: map[uint64]uint64{}, limit: 1 << 40}
	kpf := &fakeProc{e: map[uint64]uint64{}, limit: 1 << 20}
	// Pages 0..7: 0 used (referenced), 1 wasted, 2 zero page, 3 absent,
	// 4 active at mark and untouched (wasted), 5 active at mark then
	// copied on write to a new active frame (used), 6 swapped, 7 active
	// after mark (used).
	pm.e[vpn+0], kpf.e[100] = pmPresent|100, 0
	pm.e[vpn+1], kpf.e[101] = pmPresent|101, 0
	pm.e[vpn+2], kpf.e[5] = pmPresent|5, kpfZeroPage
	pm.e[vpn+4], kpf.e[300] = pmPresent|300, kpfActive
	pm.e[vpn+5], kpf.e[301] = pmPresent|301, kpfActive
	pm.e[vpn+6] = pmSwapped | 77
	pm.e[vpn+7], kpf.e[500] = pmPresent|500, 0
	cleared := 0
	// Two runs sharing one pagemap read.
	tr := newAccessTracker([]hostRun{{base, 2}, {base + 2*format.PageSize, 6}}, pm, kpf, func() error { cleared++; return nil })
	if _, err := tr.Measure(); err == nil {
		t.Fatal("Measure before Mark did not fail")
	}
	if err := tr.Mark(); err != nil {
		t.Fatal(err)
	}
	if cleared != 1 {
		t.Fatalf("clear_refs written %d times", cleared)
	}
	kpf.e[100] = kpfReferenced
	pm.e[vpn+5], kpf.e[900] = pmPresent|900, kpfActive
	kpf.e[500] = kpfActive
	st, err := tr.states()
	if err != nil {
		t.Fatal(err)
	}
	want := []pageState{pageUsed, pageWasted, pageZero, pageAbsent, pageWasted, pageUsed, pageAbsent, pageUsed}
	if !slices.Equal(st, want) {
		t.Fatalf("states %v, want %v", st, want)
	}
	u, err := tr.Measure()
	if err != nil {
		t.Fatal(err)
	}
	if u.Pages != 8 || u.Used != 3 || u.Wasted != 2 || u.Zero != 1 || u.Absent != 2 {
		t.Fatalf("Measure = %+v", u)
	}

	// PFNs hidden (not CAP_SYS_ADMIN): a clear error, not a count.
	pm.e[vpn+1] = pmPresent
	if _, err := tr.Measure(); !errors.Is(err, ErrNoPageFlags) {
		t.Fatalf("hidden PFNs: %v, want ErrNoPageFlags", err)
	}
	pm.e[vpn+1] = pmPresent | 101
	// A frame past the end of kpageflags: an error naming it.
	pm.e[vpn+1] = pmPresent | (1 << 21)
	if _, err := tr.Measure(); err == nil {
		t.Fatal("frame past kpageflags' end: no error")
	}
	// A short pagemap: an error.
	pm.limit = vpn + 4
	if _, err := tr.Measure(); err == nil {
		t.Fatal("short pagemap: no error")
	}
}

// FuzzAccessTracker feeds arbitrary pagemap and kpageflags contents to the
// tracker: it must classify every page exactly once or fail with an error,
// never panic.
func FuzzAccessTracker(f *testing.F) {
	seed := make([]byte, 16*8)
	binary.LittleEndian.PutUint64(seed, pmPresent|3)
	f.Add(seed, []byte{4, 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, pmBytes, kpfBytes []byte) {
		pm := &fakeProc{e: map[uint64]uint64{}, limit: uint64(len(pmBytes) / 8)}
		kpf := &fakeProc{e: map[uint64]uint64{}, limit: uint64(len(kpfBytes) / 8)}
		pmE, err := pagemap.Decode(pmBytes[:len(pmBytes)/8*8])
		if err != nil {
			t.Fatal(err)
		}
		kE, _ := pagemap.Decode(kpfBytes[:len(kpfBytes)/8*8])
		for i, e := range pmE {
			pm.e[uint64(i)] = e
		}
		for i, e := range kE {
			kpf.e[uint64(i)] = e
		}
		n := int64(len(pmE))
		if n == 0 {
			return
		}
		// Two runs with a one-page hole between them (when there is room).
		runs := []hostRun{{0, n}}
		if n >= 3 {
			runs = []hostRun{{0, n / 2}, {uint64(n/2+1) * format.PageSize, n - n/2 - 1}}
		}
		tr := newAccessTracker(runs, pm, kpf, func() error { return nil })
		if err := tr.Mark(); err != nil {
			return
		}
		u, err := tr.Measure()
		if err != nil {
			return
		}
		if u.Pages != tr.Pages() || u.Used+u.Wasted+u.Zero+u.Absent != u.Pages || u.Used < 0 || u.Wasted < 0 {
			t.Fatalf("Measure = %+v for %d pages", u, tr.Pages())
		}
	})
}

// TestAccessTrackerProc checks the mechanism on this kernel: after Mark,
// exactly the pages touched through the kernel (a read of /proc/self/mem
// at their addresses: get_user_pages with FOLL_TOUCH calls
// mark_page_accessed, as KVM does when it maps a page into a guest) read as
// used. The pages are ordinary anonymous memory of this process, touched
// neither through a FUSE mount nor a userfaultfd this process serves.
func TestAccessTrackerProc(t *testing.T) {
	if _, err := os.Stat("/proc/kpageflags"); err != nil {
		t.Skipf("no /proc/kpageflags on this kernel (CONFIG_PROC_PAGE_MONITOR off?): %v", err)
	}
	const ps = format.PageSize
	const pages = 64
	mem, err := unix.Mmap(-1, 0, pages*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Munmap(mem) })
	_ = unix.Madvise(mem, unix.MADV_NOHUGEPAGE)
	// Pages 0..47 written (own frames), 48..55 read (the zero page),
	// 56..63 never touched.
	for p := range 48 {
		mem[p*ps] = byte(p + 1)
	}
	var sink byte
	for p := 48; p < 56; p++ {
		sink += mem[p*ps]
	}
	if sink != 0 {
		t.Fatal("fresh anonymous memory is not zero")
	}
	self, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { self.Close() })
	addr := uint64(uintptr(unsafe.Pointer(&mem[0])))
	touch := func(p int) {
		t.Helper()
		b := make([]byte, 1)
		if _, err := self.ReadAt(b, int64(addr)+int64(p*ps)); err != nil {
			t.Fatalf("pread /proc/self/mem page %d: %v", p, err)
		}
		if b[0] != byte(p+1) && p < 48 {
			t.Fatalf("page %d reads %d", p, b[0])
		}
	}
	// Pages 0..39 accessed three times before Mark: the second access
	// activates a page (through a per-CPU batch, applied when it fills),
	// so some are active at Mark; those not touched after it must not
	// count as used.
	for range 3 {
		for p := range 40 {
			touch(p)
		}
	}
	ws := &WorkingSet{Version: WorkingSetVersion, PageSize: ps, Ranges: []PageRange{{format.ArtifactMemory, 0, pages}}}
	tr, err := NewAccessTracker(ws, []Region{{HostAddr: addr, Length: pages * ps, Artifact: format.ArtifactMemory}})
	if err != nil {
		if errors.Is(err, ErrNoPageFlags) && os.Geteuid() != 0 {
			t.Skipf("not root: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	if err := tr.Mark(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d pages active at Mark (the active-before case)", len(tr.activeAt))
	used := []int{1, 2, 7, 10, 20, 33, 47}
	for _, p := range used {
		touch(p)
	}
	touch(50) // the zero page: stays unknown
	st, err := tr.states()
	if err != nil {
		t.Fatal(err)
	}
	for p, s := range st {
		want := pageWasted
		switch {
		case slices.Contains(used, p):
			want = pageUsed
		case p >= 56:
			want = pageAbsent
		case p >= 48:
			want = pageZero
		}
		if s != want {
			t.Errorf("page %d: state %d, want %d", p, s, want)
		}
	}
	u, err := tr.Measure()
	if err != nil {
		t.Fatal(err)
	}
	if u.Used != int64(len(used)) || u.Wasted != 48-int64(len(used)) || u.Zero != 8 || u.Absent != 8 {
		t.Fatalf("Measure = %+v", u)
	}
	t.Logf("mark %.1f us, measure %.1f us for %d pages", u.MarkSeconds*1e6, u.MeasureSeconds*1e6, pages)
}
