package fusefs

import (
	"strings"
	"testing"
	"time"
)

var timeZero time.Time

func TestParseMountInfo(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []MountInfo
		err  string
	}{
		{
			name: "fuse mount with optional fields",
			in:   "61 25 0:53 / /mnt/a\\040b rw,nosuid,nodev,relatime shared:33 master:2 - fuse.smolmount smolmount ro,user_id=0,group_id=0\n",
			want: []MountInfo{{ID: 61, Major: 0, Minor: 53, Root: "/", MountPoint: "/mnt/a b", FSType: "fuse.smolmount", Source: "smolmount"}},
		},
		{
			name: "no optional fields, several lines",
			in:   "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\n23 22 0:5 / /dev rw - devtmpfs udev rw\n",
			want: []MountInfo{
				{ID: 22, Major: 8, Minor: 1, Root: "/", MountPoint: "/", FSType: "ext4", Source: "/dev/sda1"},
				{ID: 23, Major: 0, Minor: 5, Root: "/", MountPoint: "/dev", FSType: "devtmpfs", Source: "udev"},
			},
		},
		{name: "no separator", in: "1 2 0:1 / /x rw ext4 src rw\n", err: "separator"},
		{name: "nothing after separator", in: "1 2 0:1 / /x rw - ext4\n", err: "missing"},
		{name: "bad id", in: "x 2 0:1 / /x rw - ext4 s rw\n", err: "mount id"},
		{name: "bad device", in: "1 2 01 / /x rw - ext4 s rw\n", err: "major:minor"},
		{name: "bad minor", in: "1 2 0:z / /x rw - ext4 s rw\n", err: "minor"},
		{name: "bad escape", in: "1 2 0:1 / /x\\09 rw - ext4 s rw\n", err: "escape"},
		{name: "bad octal escape", in: "1 2 0:1 / /x\\999 rw - ext4 s rw\n", err: "escape"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseMountInfo([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "line 1") {
					t.Fatalf("err %v, want one mentioning %q and the line", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("line %d: %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
	if !(MountInfo{FSType: "fuse.x"}).IsFUSE() || !(MountInfo{FSType: "fuse"}).IsFUSE() || (MountInfo{FSType: "fuseblk"}).IsFUSE() {
		t.Error("IsFUSE")
	}
}

func FuzzParseMountInfo(f *testing.F) {
	f.Add([]byte("61 25 0:53 / /mnt/a\\040b rw shared:33 - fuse.smolmount smolmount ro\n"))
	f.Add([]byte("1 2 0:1 / /x rw - ext4\n"))
	f.Add([]byte("1 2 0:1 / /x\\0 rw - ext4 s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseMountInfo(data)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.FSType == "" || m.Source == "" || m.MountPoint == "" {
				t.Fatalf("accepted an entry with an empty field: %+v", m)
			}
		}
	})
}

func TestCheckPath(t *testing.T) {
	cases := []struct {
		path string
		ok   bool
	}{
		{"memory", true}, {"disk/root", true}, {"a/b/c", true},
		{"", false}, {"/memory", false}, {".stats", false}, {"disk/../x", false}, {"disk//x", false},
		{"disk/", false}, {"./memory", false}, {"disk/.", false}, {"a\x00b", false}, {strings.Repeat("x", 256), false},
	}
	for _, c := range cases {
		if err := checkPath(c.path); (err == nil) != c.ok {
			t.Errorf("checkPath(%q) = %v, want ok=%v", c.path, err, c.ok)
		}
	}
}

func TestNewTreeRejects(t *testing.T) {
	cases := []struct {
		name string
		spec fakeSpec
	}{
		{"duplicate image", fakeSpec{FramePages: 4, Images: []fakeImageSpec{{Name: "memory", Size: 1}, {Name: "memory", Size: 2}}}},
		{"image and file", fakeSpec{FramePages: 4, Images: []fakeImageSpec{{Name: "state", Size: 1}}, Files: map[string]string{"state": "x"}}},
		{"file is a directory", fakeSpec{FramePages: 4, Images: []fakeImageSpec{{Name: "disk", Size: 1}, {Name: "disk/root", Size: 1}}}},
		{"bad name", fakeSpec{FramePages: 4, Images: []fakeImageSpec{{Name: "../etc", Size: 1}}}},
		{"stats name", fakeSpec{FramePages: 4, Files: map[string]string{StatsName: "x"}}},
	}
	for _, c := range cases {
		if _, err := newTree(newFakeBundle(c.spec), timeZero, 4096, nil); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
	if _, err := newTree(newFakeBundle(smallSpec()), timeZero, 4096, nil); err != nil {
		t.Errorf("small spec: %v", err)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Setenv("SMOLVM_RUN_DIR", t.TempDir())
	mp := t.TempDir() + "/a%b/c"
	p, err := RecordPath(mp)
	if err == nil {
		t.Fatalf("RecordPath of a path whose parent does not exist: %s, want an error", p)
	}
	mp = t.TempDir()
	r := Record{PID: 1234, MountPoint: mp, Bundle: "/b.smolmachine", Dev: "0:99"}
	p, err = WriteRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(p[len(RunDir())+1:], "/") != 0 {
		t.Errorf("record path %s is not flat in %s", p, RunDir())
	}
	got, err := ReadRecord(mp)
	if err != nil || got.PID != r.PID || got.Dev != r.Dev || got.MountPoint != mp {
		t.Fatalf("ReadRecord = %+v, %v; want %+v", got, err, r)
	}
	if err := RemoveRecord(mp, 999); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRecord(mp); err != nil {
		t.Errorf("RemoveRecord with another pid removed it: %v", err)
	}
	if err := RemoveRecord(mp, 1234); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRecord(mp); err == nil {
		t.Error("record still there after RemoveRecord")
	}
}
