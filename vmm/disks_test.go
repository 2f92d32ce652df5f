package vmm

import (
	"errors"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/disk"
)

func TestDiskConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		disks []DiskConfig
		ok    bool
	}{
		{"none", nil, true},
		{"rw and cow", []DiskConfig{{Name: "root", Path: "/a"}, {Name: "data", Path: "/b", Mode: disk.ModeCOW, OverlayPath: "/o"}}, true},
		{"no name", []DiskConfig{{Path: "/a"}}, false},
		{"long name", []DiskConfig{{Name: "a-name-longer-than-twenty", Path: "/a"}}, false},
		{"no path", []DiskConfig{{Name: "root"}}, false},
		{"twice", []DiskConfig{{Name: "root", Path: "/a"}, {Name: "root", Path: "/b"}}, false},
		{"bad mode", []DiskConfig{{Name: "root", Path: "/a", Mode: "snap"}}, false},
		{"cow without overlay", []DiskConfig{{Name: "root", Path: "/a", Mode: disk.ModeCOW}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Kernel: "k", CPUs: 1, MemBytes: 64 << 20, Disks: tc.disks}
			err := c.validate()
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrConfig)) {
				t.Fatalf("validate: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestGuestMemoryBounds(t *testing.T) {
	low, high := make([]byte, 4096), make([]byte, 4096)
	g := &guestMemory{regions: []RAMRegion{{GPA: 0, Data: low}, {GPA: 1 << 32, Data: high}}}
	for _, tc := range []struct {
		gpa uint64
		n   int
		ok  bool
	}{
		{0, 4096, true},
		{4095, 1, true},
		{4095, 2, false}, // runs off low RAM
		{8192, 1, false}, // hole
		{1<<32 + 4000, 96, true},
		{1<<32 + 4000, 97, false},
		{^uint64(0), 2, false}, // wraps
	} {
		err := g.Write(tc.gpa, make([]byte, tc.n))
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, virtio.ErrBadAddress)) {
			t.Errorf("write [%#x,+%d): %v, want ok=%v", tc.gpa, tc.n, err, tc.ok)
		}
	}
	if err := g.Write(1<<32+10, []byte("hi")); err != nil || string(high[10:12]) != "hi" {
		t.Fatalf("high write: %v", err)
	}
	p := make([]byte, 2)
	if err := g.Read(1<<32+10, p); err != nil || string(p) != "hi" {
		t.Fatalf("high read %q %v", p, err)
	}
}
