package amd64

import (
	"errors"
	"reflect"
	"testing"
)

func TestE820Map(t *testing.T) {
	const M, G = 1 << 20, 1 << 30
	bios := []E820Entry{{0, 0x9FC00, E820RAM}, {0x9FC00, 0x60400, E820Reserved}}
	apics := []E820Entry{{0xFEBFF000, 0x1000, E820Reserved}, {0xFEC00000, 0x1000, E820Reserved}, {0xFEE00000, 0x1000, E820Reserved}}
	join := func(parts ...[]E820Entry) []E820Entry {
		var out []E820Entry
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name    string
		mem     uint64
		want    []E820Entry
		wantErr error
	}{
		{"256 MiB", 256 * M, join(bios, []E820Entry{{M, 255 * M, E820RAM}}, apics), nil},
		{"exactly 3 GiB", 3 * G, join(bios, []E820Entry{{M, 3*G - M, E820RAM}}, apics), nil},
		{"3 GiB + 2 MiB", 3*G + 2*M, join(bios, []E820Entry{{M, 3*G - M, E820RAM}}, apics, []E820Entry{{4 * G, 2 * M, E820RAM}}), nil},
		{"8 GiB", 8 * G, join(bios, []E820Entry{{M, 3*G - M, E820RAM}}, apics, []E820Entry{{4 * G, 5 * G, E820RAM}}), nil},
		{"1 MiB is too small", M, nil, ErrMemoryTooSmall},
		{"zero", 0, nil, ErrMemoryTooSmall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := E820Map(tt.mem)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %x\nwant %x", got, tt.want)
			}
			// RAM in the map plus the reserved BIOS area adds up to the
			// guest's memory; ranges are sorted and do not overlap.
			var ram uint64
			for i, e := range got {
				if e.Type == E820RAM {
					ram += e.Size
				}
				if i > 0 && got[i-1].Addr+got[i-1].Size > e.Addr {
					t.Errorf("entry %d %x overlaps or is out of order", i, e)
				}
			}
			if err == nil && ram+HighMemStart-EBDAStart != tt.mem {
				t.Errorf("RAM in map %#x, guest has %#x", ram, tt.mem)
			}
		})
	}
}

func TestRAMRegions(t *testing.T) {
	const G = 1 << 30
	tests := []struct {
		mem  uint64
		want []MemRegion
	}{
		{256 << 20, []MemRegion{{0, 256 << 20}}},
		{3 * G, []MemRegion{{0, 3 * G}}},
		{5 * G, []MemRegion{{0, 3 * G}, {4 * G, 2 * G}}},
	}
	for _, tt := range tests {
		if got := RAMRegions(tt.mem); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("RAMRegions(%#x) = %x, want %x", tt.mem, got, tt.want)
		}
		if got := LowRAMSize(tt.mem); got != tt.want[0].Size {
			t.Errorf("LowRAMSize(%#x) = %#x", tt.mem, got)
		}
	}
}

func TestInterruptRouting(t *testing.T) {
	tests := []struct {
		slot, pin int
		want      uint32
	}{{1, 0, 17}, {1, 3, 20}, {7, 0, 23}, {7, 1, 16}, {31, 3, 18}}
	for _, tt := range tests {
		if got := PCIIntxGSI(tt.slot, tt.pin); got != tt.want {
			t.Errorf("PCIIntxGSI(%d, %d) = %d, want %d", tt.slot, tt.pin, got, tt.want)
		}
	}
	if ISAGSI(0) != 2 || ISAGSI(4) != 4 || ISAGSI(9) != 9 {
		t.Errorf("ISAGSI: 0->%d 4->%d 9->%d", ISAGSI(0), ISAGSI(4), ISAGSI(9))
	}
	if IOAPICID(2) != 2 {
		t.Errorf("IOAPICID(2) = %d", IOAPICID(2))
	}
}
