package amd64

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestSegmentDescriptor(t *testing.T) {
	tests := []struct {
		name string
		seg  Segment
		raw  uint64
	}{
		// Well-known flat descriptors: 64-bit code (access 0x9B, flags
		// 0xA), 32-bit-style flat data (access 0x93, flags 0xC).
		{"code64", CodeSegment, 0x00AF9B000000FFFF},
		{"data", DataSegment, 0x00CF93000000FFFF},
		{"tss", TSSSegment, 0x00008B0000000067},
		{"based", Segment{Base: 0x12345678, Limit: 0xABCDE, Type: 2, Present: 1, S: 1, DPL: 3}, 0x120AF2345678BCDE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SegmentDescriptor(tt.seg); got != tt.raw {
				t.Errorf("SegmentDescriptor = %#016x, want %#016x", got, tt.raw)
			}
			back := SegmentFromDescriptor(tt.raw, tt.seg.Selector)
			if back != tt.seg {
				t.Errorf("SegmentFromDescriptor = %+v, want %+v", back, tt.seg)
			}
		})
	}
}

func TestWriteGDT(t *testing.T) {
	mem := make([]byte, 0x1000)
	for i := range mem {
		mem[i] = 0xCC
	}
	if err := WriteGDT(mem); err != nil {
		t.Fatal(err)
	}
	s := BootSregs()
	// Every segment register's selector indexes a GDT descriptor that
	// decodes back to the register's value, and the GDT limit covers it.
	for name, seg := range map[string]Segment{"CS": s.CS, "DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS, "TR": s.TR} {
		if uint64(seg.Selector)+7 > uint64(s.GDT.Limit) {
			t.Errorf("%s selector %#x beyond GDT limit %#x", name, seg.Selector, s.GDT.Limit)
			continue
		}
		raw := binary.LittleEndian.Uint64(mem[s.GDT.Base+uint64(seg.Selector):])
		if got := SegmentFromDescriptor(raw, seg.Selector); got != seg {
			t.Errorf("%s: GDT has %+v, register %+v", name, got, seg)
		}
	}
	if binary.LittleEndian.Uint64(mem[0x500:]) != 0 {
		t.Errorf("null descriptor not zero")
	}
	// The boot protocol's selectors.
	if s.CS.Selector != 0x10 || s.DS.Selector != 0x18 || s.SS.Selector != 0x18 || s.ES.Selector != 0x18 {
		t.Errorf("CS %#x DS %#x: want __BOOT_CS 0x10, __BOOT_DS 0x18", s.CS.Selector, s.DS.Selector)
	}
	if s.GDT.Base+uint64(s.GDT.Limit) >= s.IDT.Base {
		t.Errorf("GDT %#x+%#x runs into the IDT at %#x", s.GDT.Base, s.GDT.Limit, s.IDT.Base)
	}
	if binary.LittleEndian.Uint64(mem[0x520:]) != 0 {
		t.Errorf("IDT not cleared")
	}
	if err := WriteGDT(make([]byte, 0x510)); !errors.Is(err, ErrMemoryTooSmall) {
		t.Errorf("short memory: err = %v", err)
	}
}

func TestBootRegisters(t *testing.T) {
	s := BootSregs()
	checks := []struct {
		name string
		ok   bool
	}{
		{"CR0 PE|PG|ET|NE", s.CR0 == 0x80000031},
		{"CR3 = PML4", s.CR3 == 0x9000},
		{"CR4 PAE", s.CR4&0x20 != 0},
		{"EFER LME|LMA", s.EFER&0x500 == 0x500},
		{"CS long mode", s.CS.L == 1 && s.CS.DB == 0},
		{"APIC base BSP+enabled", s.APICBase == 0xFEE00900},
		{"LDT unusable", s.LDT.Present == 0},
		{"TR busy 64-bit TSS", s.TR.Type == 0xB && s.TR.S == 0 && s.TR.Present == 1},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.name, s)
		}
	}
	r := BootRegs(0x1000200, 0x7000)
	if r.RIP != 0x1000200 || r.RSI != 0x7000 || r.RFLAGS != 2 || r.RSP != 0x8FF0 || r.RBP != 0x8FF0 || r.RAX != 0 {
		t.Errorf("BootRegs = %+v", r)
	}
}

// translate walks the 4-level page tables in mem for virtual address va.
func translate(t *testing.T, mem []byte, cr3, va uint64) (uint64, bool) {
	t.Helper()
	le := binary.LittleEndian
	table := cr3 &^ 0xFFF
	for level, shift := range []uint{39, 30, 21, 12} {
		e := le.Uint64(mem[table+8*(va>>shift&0x1FF):])
		if e&1 == 0 {
			return 0, false
		}
		if e&0x80 != 0 && level > 0 { // large page (1 GiB or 2 MiB)
			mask := uint64(1)<<shift - 1
			return e&0x000FFFFFFFFFF000&^mask | va&mask, true
		}
		table = e & 0x000FFFFFFFFFF000
		if level == 3 {
			return table | va&0xFFF, true
		}
	}
	return 0, false
}

func TestWritePageTables(t *testing.T) {
	mem := make([]byte, 0x10000)
	if err := WritePageTables(mem); err != nil {
		t.Fatal(err)
	}
	for _, va := range []uint64{0, 0x7000, 0x1000200, 0x1FFFFF, 0x200000, 0xBFFFFFFF, 0xC0000000, 0xFEE00000, 0xFFFFFFFF} {
		pa, ok := translate(t, mem, BootSregs().CR3, va)
		if !ok || pa != va {
			t.Errorf("va %#x -> %#x (mapped %v), want identity", va, pa, ok)
		}
	}
	if _, ok := translate(t, mem, 0x9000, 1<<32); ok {
		t.Errorf("4 GiB is mapped; tables cover only the first 4 GiB")
	}
	if err := WritePageTables(make([]byte, 0xE000)); !errors.Is(err, ErrMemoryTooSmall) {
		t.Errorf("short memory: err = %v", err)
	}
}
