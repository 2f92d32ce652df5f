package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// member is what a test reads back from an archive.
type member struct {
	mode   cpio.FileMode
	data   string
	target string
}

// readArchive parses a gzip'd newc archive with the cpio library.
func readArchive(t *testing.T, gz []byte) (map[string]member, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	got := make(map[string]member)
	var order []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading archive back: %v", err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = member{mode: h.Mode, data: string(data), target: h.Linkname}
		order = append(order, h.Name)
	}
	return got, order
}

func buildSample(t *testing.T) *Archive {
	t.Helper()
	host := filepath.Join(t.TempDir(), "hostfile")
	if err := os.WriteFile(host, []byte("from the host"), 0o640); err != nil {
		t.Fatal(err)
	}
	var a Archive
	for _, err := range []error{
		a.AddFile("/init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		a.AddHostFile("etc/deep/hostfile", host, 0),
		a.AddSymlink("bin/sh", "/bin/busybox"),
		a.AddDir("tmp", 0o1777),
		a.AddDevice("/dev/console", 0o600, true, 5, 1),
		a.AddDevice("dev/vda", 0o660, false, 254, 0),
		a.AddFile("empty", 0o644, nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &a
}

func TestArchiveRoundTrip(t *testing.T) {
	a := buildSample(t)
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, order := readArchive(t, buf.Bytes())
	want := map[string]member{
		"bin":               {mode: cpio.TypeDir | 0o755},
		"bin/sh":            {mode: cpio.TypeSymlink | 0o777, target: "/bin/busybox"},
		"dev":               {mode: cpio.TypeDir | 0o755},
		"dev/console":       {mode: cpio.TypeChar | 0o600},
		"dev/vda":           {mode: cpio.TypeBlock | 0o660},
		"empty":             {mode: cpio.TypeReg | 0o644},
		"etc":               {mode: cpio.TypeDir | 0o755},
		"etc/deep":          {mode: cpio.TypeDir | 0o755},
		"etc/deep/hostfile": {mode: cpio.TypeReg | 0o640, data: "from the host"},
		"init":              {mode: cpio.TypeReg | 0o755, data: "#!/bin/sh\necho hi\n"},
		"tmp":               {mode: cpio.TypeDir | 0o1777},
	}
	if len(got) != len(want) {
		t.Errorf("archive has %d members %v, want %d", len(got), order, len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s missing from archive", name)
			continue
		}
		if g != w {
			t.Errorf("%s = %+v, want %+v", name, g, w)
		}
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("members not sorted: %q before %q", order[i-1], order[i])
		}
	}
}

// TestDeviceNumbers checks the rdev fields that the cpio library does not
// read, straight from the raw newc header.
func TestDeviceNumbers(t *testing.T) {
	a := buildSample(t)
	var buf bytes.Buffer
	if err := a.WriteCpio(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	for _, tt := range []struct {
		name         string
		major, minor int64
	}{{"dev/console", 5, 1}, {"dev/vda", 254, 0}} {
		i := bytes.Index(raw, []byte(tt.name+"\x00"))
		if i < 110 || i%4 != 2 {
			t.Fatalf("%s: header not found at a 4-byte aligned offset (name at %d)", tt.name, i)
		}
		h := string(raw[i-110 : i])
		if h[:6] != "070701" {
			t.Fatalf("%s: bad magic %q", tt.name, h[:6])
		}
		major, _ := strconv.ParseInt(h[78:86], 16, 64)
		minor, _ := strconv.ParseInt(h[86:94], 16, 64)
		if major != tt.major || minor != tt.minor {
			t.Errorf("%s: rdev %d:%d, want %d:%d", tt.name, major, minor, tt.major, tt.minor)
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, b := buildSample(t), buildSample(t)
	var x, y bytes.Buffer
	if _, err := a.WriteTo(&x); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteTo(&y); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x.Bytes(), y.Bytes()) || a.Digest() != b.Digest() {
		t.Fatal("same inputs gave different archives or digests")
	}
	if err := b.AddFile("init", 0o755, []byte("#!/bin/sh\necho bye\n")); err != nil {
		t.Fatal(err)
	}
	if a.Digest() == b.Digest() {
		t.Fatal("digest did not change with the content")
	}
}

func TestBadEntries(t *testing.T) {
	var a Archive
	for name, err := range map[string]error{
		"empty path":    a.AddFile("", 0o644, nil),
		"root path":     a.AddDir("/", 0o755),
		"type in mode":  a.AddFile("x", 0o100644, nil),
		"empty target":  a.AddSymlink("l", ""),
		"missing host":  a.AddHostFile("y", "/nonexistent/file", 0),
		"host dir":      a.AddHostFile("z", t.TempDir(), 0),
		"dot-dot stays": a.AddFile("../../etc/x", 0o644, nil), // cleaned to etc/x: allowed
	} {
		if name == "dot-dot stays" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if es := a.Entries(); len(es) != 2 || es[1].Path != "etc/x" {
		t.Errorf("entries after bad adds: %v", es)
	}
	var nf error = a.AddHostFile("y", "/nonexistent/file", 0)
	if !errors.Is(nf, os.ErrNotExist) {
		t.Errorf("missing host file: %v, want os.ErrNotExist", nf)
	}
}

func TestCache(t *testing.T) {
	dir := t.TempDir()
	a := buildSample(t)
	p1, err := a.Cache(dir, "sample")
	if err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(p1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := a.Cache(dir, "sample")
	if err != nil || p2 != p1 {
		t.Fatalf("second Cache = %q, %v; want %q", p2, err, p1)
	}
	st2, _ := os.Stat(p2)
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Error("cached archive was rewritten")
	}
	if err := a.AddFile("more", 0o644, []byte("x")); err != nil {
		t.Fatal(err)
	}
	p3, err := a.Cache(dir, "sample")
	if err != nil || p3 == p1 {
		t.Fatalf("changed archive cached at %q (%v), want a new path", p3, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("cache dir holds %d files, want 2 (no temp files left)", len(ents))
	}
	gz, _ := os.ReadFile(p3)
	if got, _ := readArchive(t, gz); got["more"].data != "x" {
		t.Error("cached archive lacks the new file")
	}
}

func TestCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d := CacheDir(); d != "/x/cache/smolvm" {
		t.Errorf("CacheDir = %q", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	if d := CacheDir(); d != "/var/cache/smolvm" {
		t.Errorf("CacheDir = %q", d)
	}
}
