package amd64

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// Offsets below are written as literals from the boot protocol
// (Documentation/arch/x86/zero-page.rst and boot.rst), independent of the
// constants the code uses.

func TestSetupBoot(t *testing.T) {
	const M = 1 << 20
	le := binary.LittleEndian
	tests := []struct {
		name       string
		kernel     func(*fakeKernel)
		mem        uint64
		initrd     int
		cmdline    string
		cpus       int
		wantErr    error
		wantLoad   uint64
		wantInitrd uint64
	}{
		{name: "relocatable at pref_address", mem: 64 * M, initrd: 5000, cmdline: "console=ttyS0 panic=-1", cpus: 2,
			wantLoad: 0x1000000, wantInitrd: 64*M - 0x2000},
		{name: "no initrd", mem: 64 * M, cmdline: "quiet", cpus: 1, wantLoad: 0x1000000},
		{name: "not relocatable at 1 MiB", kernel: func(f *fakeKernel) { f.relocatable = false }, mem: 64 * M, initrd: 4096, cpus: 4,
			wantLoad: 0x100000, wantInitrd: 64*M - 0x1000},
		{name: "initrd below initrd_addr_max", kernel: func(f *fakeKernel) { f.initrdAddrMax = 0x2FFFFFF }, mem: 256 * M, initrd: 0x1800, cpus: 1,
			wantLoad: 0x1000000, wantInitrd: 0x3000000 - 0x2000},
		{name: "kernel does not fit", mem: 16*M + 0x300000, cpus: 1, wantErr: ErrMemoryTooSmall},
		{name: "initrd does not fit", mem: 24 * M, initrd: 4*M + 1, cpus: 1, wantErr: ErrMemoryTooSmall},
		{name: "initrd exactly fits", mem: 24 * M, initrd: 4 * M, cpus: 1, wantLoad: 0x1000000, wantInitrd: 20 * M},
		{name: "initrd larger than memory", mem: 24 * M, initrd: 25 * M, cpus: 1, wantErr: ErrMemoryTooSmall},
		{name: "cmdline over cmdline_size", kernel: func(f *fakeKernel) { f.cmdlineSize = 10 }, mem: 64 * M, cmdline: "console=ttyS0", cpus: 1, wantErr: ErrCmdlineTooLong},
		{name: "cmdline over 4 KiB", mem: 64 * M, cmdline: strings.Repeat("x", 4096), kernel: func(f *fakeKernel) { f.cmdlineSize = 8192 }, cpus: 1, wantErr: ErrCmdlineTooLong},
		{name: "cmdline with NUL", mem: 64 * M, cmdline: "a\x00b", cpus: 1, wantErr: ErrInvalidConfig},
		{name: "zero vCPUs", mem: 64 * M, cpus: 0, wantErr: ErrInvalidConfig},
		{name: "too many vCPUs", mem: 64 * M, cpus: 255, wantErr: ErrInvalidConfig},
		{name: "1 MiB of RAM", mem: M, cpus: 1, wantErr: ErrMemoryTooSmall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := defaultFake()
			if tt.kernel != nil {
				tt.kernel(&f)
			}
			raw := f.bytes()
			k, err := ParseBzImage(raw)
			if err != nil {
				t.Fatal(err)
			}
			initrd := make([]byte, tt.initrd)
			for i := range initrd {
				initrd[i] = byte(i*13 + 1)
			}
			mem := make([]byte, LowRAMSize(tt.mem))
			info, err := SetupBoot(mem, BootConfig{Kernel: k, Initrd: initrd, Cmdline: tt.cmdline, MemSize: tt.mem, CPUs: tt.cpus})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.KernelAddr != tt.wantLoad || info.Entry != tt.wantLoad+0x200 || info.ZeroPage != 0x7000 {
				t.Errorf("load %#x entry %#x zero page %#x", info.KernelAddr, info.Entry, info.ZeroPage)
			}
			if !bytes.Equal(mem[info.KernelAddr:info.KernelAddr+uint64(len(k.Kernel))], k.Kernel) {
				t.Errorf("protected-mode kernel not at %#x", info.KernelAddr)
			}
			if info.InitrdAddr != tt.wantInitrd || info.InitrdSize != uint64(tt.initrd) {
				t.Errorf("initrd at %#x size %#x, want %#x size %#x", info.InitrdAddr, info.InitrdSize, tt.wantInitrd, tt.initrd)
			}
			if tt.initrd > 0 && !bytes.Equal(mem[info.InitrdAddr:info.InitrdAddr+info.InitrdSize], initrd) {
				t.Errorf("initrd bytes not at %#x", info.InitrdAddr)
			}
			if info.InitrdAddr%4096 != 0 || (tt.initrd > 0 && info.InitrdAddr < info.KernelEnd) {
				t.Errorf("initrd at %#x: unaligned or overlapping the kernel (end %#x)", info.InitrdAddr, info.KernelEnd)
			}
			cmd := mem[0x20000 : 0x20000+len(tt.cmdline)+1]
			if string(cmd[:len(tt.cmdline)]) != tt.cmdline || cmd[len(tt.cmdline)] != 0 {
				t.Errorf("cmdline at 0x20000 = %q", cmd)
			}

			zp := mem[0x7000 : 0x7000+4096]
			// The setup header is copied at 0x1F1 and patched.
			if zp[0x1F1] != raw[0x1F1] || le.Uint16(zp[0x1FE:]) != 0xAA55 || string(zp[0x202:0x206]) != "HdrS" {
				t.Errorf("setup header not copied to 0x1F1")
			}
			if le.Uint32(zp[0x260:]) != f.initSize || le.Uint64(zp[0x258:]) != f.prefAddress {
				t.Errorf("init_size / pref_address not copied")
			}
			if zp[0x210] != 0xFF {
				t.Errorf("type_of_loader = %#x, want 0xFF", zp[0x210])
			}
			if zp[0x211]&0x81 != 0x81 {
				t.Errorf("loadflags = %#x, want LOADED_HIGH|CAN_USE_HEAP", zp[0x211])
			}
			if le.Uint16(zp[0x224:]) != 0xFE00-0x200 {
				t.Errorf("heap_end_ptr = %#x", le.Uint16(zp[0x224:]))
			}
			if le.Uint32(zp[0x228:]) != 0x20000 || le.Uint32(zp[0x0C8:]) != 0 {
				t.Errorf("cmd_line_ptr = %#x ext %#x", le.Uint32(zp[0x228:]), le.Uint32(zp[0x0C8:]))
			}
			if uint64(le.Uint32(zp[0x218:])) != info.InitrdAddr || uint64(le.Uint32(zp[0x21C:])) != info.InitrdSize ||
				le.Uint32(zp[0x0C0:]) != 0 || le.Uint32(zp[0x0C4:]) != 0 {
				t.Errorf("ramdisk fields %#x/%#x ext %#x/%#x", le.Uint32(zp[0x218:]), le.Uint32(zp[0x21C:]), le.Uint32(zp[0x0C0:]), le.Uint32(zp[0x0C4:]))
			}
			if got := le.Uint64(zp[0x070:]); got != 0xE0000 || string(mem[got:got+8]) != "RSD PTR " {
				t.Errorf("acpi_rsdp_addr = %#x", got)
			}
			n := int(zp[0x1E8])
			if n != len(info.E820) || n < 3 {
				t.Fatalf("e820_entries = %d, map has %d", n, len(info.E820))
			}
			var ramTop uint64
			for i := range n {
				e := zp[0x2D0+20*i:]
				addr, size, typ := le.Uint64(e), le.Uint64(e[8:]), le.Uint32(e[16:])
				if (E820Entry{addr, size, typ}) != info.E820[i] {
					t.Errorf("e820[%d] = %#x+%#x type %d, want %x", i, addr, size, typ, info.E820[i])
				}
				if typ == 1 {
					ramTop = max(ramTop, addr+size)
				}
			}
			if ramTop != tt.mem {
				t.Errorf("e820 RAM ends at %#x, want %#x", ramTop, tt.mem)
			}
			if _, err := runStub(mem); err != nil {
				t.Errorf("reset vector: %v", err)
			}
			// GDT and page tables are in place.
			if le.Uint64(mem[0x500+0x10:]) != 0x00AF9B000000FFFF || le.Uint64(mem[0x9000:])&^0xFFF != 0xA000 {
				t.Errorf("GDT or PML4 missing")
			}
		})
	}
}

func TestSetupBootRealKernels(t *testing.T) {
	for _, p := range realKernels(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		k, err := ParseBzImage(data)
		if err != nil {
			t.Fatal(err)
		}
		const mem = 128 << 20
		initrd := bytes.Repeat([]byte{0x5A}, 3<<20)
		buf := make([]byte, mem)
		info, err := SetupBoot(buf, BootConfig{Kernel: k, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1", MemSize: mem, CPUs: 2})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if info.Entry != 0x1000200 || info.InitrdAddr+info.InitrdSize > mem || info.InitrdAddr < info.KernelEnd {
			t.Errorf("%s: entry %#x initrd %#x+%#x kernel end %#x", p, info.Entry, info.InitrdAddr, info.InitrdSize, info.KernelEnd)
		}
		// 64 MiB is too small for a kernel with init_size ~50 MiB loaded
		// at 16 MiB: a clear error, not a corrupt boot.
		small := make([]byte, 64<<20)
		_, err = SetupBoot(small, BootConfig{Kernel: k, MemSize: 64 << 20, CPUs: 1})
		if !errors.Is(err, ErrMemoryTooSmall) || !strings.Contains(err.Error(), "init_size") {
			t.Errorf("%s in 64 MiB: err = %v", p, err)
		}
	}
}

func TestWriteBootParamsHighInitrd(t *testing.T) {
	le := binary.LittleEndian
	mem := make([]byte, 0x10000)
	hdr := defaultFake().bytes()[0x1F1:0x26C]
	e := make([]E820Entry, 3)
	err := WriteBootParams(mem, 0x7000, BootParams{Header: hdr, CmdlineAddr: 0x1_0000_2000, InitrdAddr: 0x2_3456_7000, InitrdSize: 0x1_0000_0010, E820: e})
	if err != nil {
		t.Fatal(err)
	}
	zp := mem[0x7000:]
	if le.Uint32(zp[0x218:]) != 0x34567000 || le.Uint32(zp[0x0C0:]) != 2 ||
		le.Uint32(zp[0x21C:]) != 0x10 || le.Uint32(zp[0x0C4:]) != 1 ||
		le.Uint32(zp[0x228:]) != 0x2000 || le.Uint32(zp[0x0C8:]) != 1 {
		t.Errorf("split fields: image %#x/%#x size %#x/%#x cmdline %#x/%#x",
			le.Uint32(zp[0x218:]), le.Uint32(zp[0x0C0:]), le.Uint32(zp[0x21C:]), le.Uint32(zp[0x0C4:]), le.Uint32(zp[0x228:]), le.Uint32(zp[0x0C8:]))
	}
	if zp[0x1E8] != 3 {
		t.Errorf("e820_entries = %d", zp[0x1E8])
	}
	for _, bad := range []struct {
		name string
		addr uint64
		p    BootParams
	}{
		{"zero page past the end", 0xF800, BootParams{Header: hdr}},
		{"too many e820 entries", 0x7000, BootParams{Header: hdr, E820: make([]E820Entry, 129)}},
		{"short header", 0x7000, BootParams{Header: hdr[:10]}},
	} {
		if err := WriteBootParams(mem, bad.addr, bad.p); err == nil {
			t.Errorf("%s: no error", bad.name)
		}
	}
}

// BenchmarkSetupBoot measures preparing guest memory for a boot of the
// installed Debian kernel with a 16 MiB initrd (copying dominates).
func BenchmarkSetupBoot(b *testing.B) {
	paths := realKernels(b)
	data, err := os.ReadFile(paths[0])
	if err != nil {
		b.Fatal(err)
	}
	k, err := ParseBzImage(data)
	if err != nil {
		b.Fatal(err)
	}
	const memSize = 256 << 20
	mem := make([]byte, memSize)
	initrd := make([]byte, 16<<20)
	cfg := BootConfig{Kernel: k, Initrd: initrd, Cmdline: "console=ttyS0", MemSize: memSize, CPUs: 2}
	b.SetBytes(int64(len(k.Kernel) + len(initrd)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := SetupBoot(mem, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
