package main

import (
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm"
	"github.com/smolvm/smolvm/vmm/disk"
)

func TestParseDiskFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		vals     []string
		stateDir string
		want     []vmm.DiskConfig
		err      bool
	}{
		{"rw", []string{"root=/img/a"}, "", []vmm.DiskConfig{{Name: "root", Path: "/img/a", Mode: disk.ModeRW}}, false},
		{"ro then cow", []string{"a=/x,ro", "b=/y,cow"}, "/run/smolvm/vm1", []vmm.DiskConfig{
			{Name: "a", Path: "/x", Mode: disk.ModeRO},
			{Name: "b", Path: "/y", Mode: disk.ModeCOW, OverlayPath: "/run/smolvm/vm1/disk-b.overlay"}}, false},
		{"explicit overlay", []string{"b=/y,cow,overlay=/tmp/o"}, "", []vmm.DiskConfig{{Name: "b", Path: "/y", Mode: disk.ModeCOW, OverlayPath: "/tmp/o"}}, false},
		{"cow without a place", []string{"b=/y,cow"}, "", nil, true},
		{"no name", []string{"=/y"}, "", nil, true},
		{"no path", []string{"a="}, "", nil, true},
		{"no equals", []string{"/y"}, "", nil, true},
		{"two modes", []string{"a=/y,ro,cow"}, "", nil, true},
		{"unknown option", []string{"a=/y,fast"}, "", nil, true},
		{"overlay without cow", []string{"a=/y,overlay=/o"}, "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDiskFlags(tc.vals, tc.stateDir)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if !tc.err && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzParseDiskFlag: any --disk value parses to a config the VMM accepts or
// is refused with an error; never a panic.
func FuzzParseDiskFlag(f *testing.F) {
	for _, s := range []string{"root=/img", "a=/x,ro", "b=/y,cow,overlay=/o", "=", "a=,", "a=/y,cow,cow"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDiskFlag(s)
		if err != nil {
			return
		}
		if d.Name == "" || d.Path == "" {
			t.Fatalf("%q parsed to %+v", s, d)
		}
		if _, err := disk.ParseMode(string(d.Mode)); err != nil {
			t.Fatalf("%q parsed to mode %q", s, d.Mode)
		}
		if d.OverlayPath != "" && d.Mode != disk.ModeCOW {
			t.Fatalf("%q: overlay without cow", s)
		}
	})
}
