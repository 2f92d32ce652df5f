package amd64

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// fakeKernel describes a synthetic bzImage for tests.
type fakeKernel struct {
	setupSects    uint8
	version       uint16
	loadFlags     uint8
	xloadFlags    uint16
	relocatable   bool
	align         uint32
	prefAddress   uint64
	initSize      uint32
	initrdAddrMax uint32
	cmdlineSize   uint32
	kernelSize    int
}

func defaultFake() fakeKernel {
	return fakeKernel{
		setupSects: 4, version: 0x020F, loadFlags: LoadedHigh, xloadFlags: XLFKernel64 | XLFCanAbove4G,
		relocatable: true, align: 0x200000, prefAddress: 0x1000000, initSize: 0x400000,
		initrdAddrMax: 0x7FFFFFFF, cmdlineSize: 2047, kernelSize: 0x3000,
	}
}

// bytes builds the bzImage. The protected-mode kernel is filled with a
// recognisable pattern.
func (f fakeKernel) bytes() []byte {
	sects := int(f.setupSects)
	if sects == 0 {
		sects = defaultSetupSects
	}
	data := make([]byte, (sects+1)*sectorSize+f.kernelSize)
	le := binary.LittleEndian
	data[offSetupSects] = f.setupSects
	le.PutUint16(data[offBootFlag:], bootFlagMagic)
	data[offJump] = 0xEB
	data[offJump+1] = 0x6A // header ends at 0x26C, as in protocol 2.15
	le.PutUint32(data[offHeaderMagic:], headerMagic)
	le.PutUint16(data[offVersion:], f.version)
	data[offLoadFlags] = f.loadFlags
	le.PutUint32(data[offInitrdAddrMax:], f.initrdAddrMax)
	le.PutUint32(data[offKernelAlign:], f.align)
	if f.relocatable {
		data[offRelocatable] = 1
	}
	le.PutUint16(data[offXLoadFlags:], f.xloadFlags)
	le.PutUint32(data[offCmdlineSize:], f.cmdlineSize)
	le.PutUint64(data[offPrefAddress:], f.prefAddress)
	le.PutUint32(data[offInitSize:], f.initSize)
	for i := (sects + 1) * sectorSize; i < len(data); i++ {
		data[i] = patternByte(i)
	}
	return data
}

func TestParseBzImage(t *testing.T) {
	good := defaultFake()
	tests := []struct {
		name    string
		mutate  func(*fakeKernel)
		raw     func([]byte) []byte
		wantErr error
		check   func(*testing.T, *BzImage)
	}{
		{name: "good", check: func(t *testing.T, b *BzImage) {
			if b.Protocol != 0x020F || b.SetupSects != 4 || !b.Relocatable || b.PrefAddress != 0x1000000 ||
				b.InitSize != 0x400000 || b.CmdlineSize != 2047 || b.InitrdAddrMax != 0x7FFFFFFF || b.KernelAlignment != 0x200000 {
				t.Errorf("fields = %+v", *b)
			}
			if len(b.Kernel) != 0x3000 || b.Kernel[0] != patternByte(5*sectorSize) {
				t.Errorf("kernel: len %#x first byte %#x", len(b.Kernel), b.Kernel[0])
			}
			if len(b.Header) != 0x26C-0x1F1 {
				t.Errorf("header length %#x, want %#x", len(b.Header), 0x26C-0x1F1)
			}
			if b.LoadAddr() != 0x1000000 || b.MemoryEnd() != 0x1400000 {
				t.Errorf("LoadAddr %#x MemoryEnd %#x", b.LoadAddr(), b.MemoryEnd())
			}
		}},
		{name: "setup_sects 0 means 4", mutate: func(f *fakeKernel) { f.setupSects = 0 }, check: func(t *testing.T, b *BzImage) {
			if b.SetupSects != 4 || len(b.Kernel) != 0x3000 {
				t.Errorf("SetupSects %d, kernel %#x bytes", b.SetupSects, len(b.Kernel))
			}
		}},
		{name: "not relocatable loads at 1 MiB", mutate: func(f *fakeKernel) { f.relocatable = false }, check: func(t *testing.T, b *BzImage) {
			if b.LoadAddr() != KernelAddr || b.MemoryEnd() != 0x1400000 {
				t.Errorf("LoadAddr %#x MemoryEnd %#x", b.LoadAddr(), b.MemoryEnd())
			}
		}},
		{name: "pref_address below 1 MiB", mutate: func(f *fakeKernel) { f.prefAddress = 0x80000 }, check: func(t *testing.T, b *BzImage) {
			if b.LoadAddr() != KernelAddr || b.MemoryEnd() != KernelAddr+0x400000 {
				t.Errorf("LoadAddr %#x MemoryEnd %#x", b.LoadAddr(), b.MemoryEnd())
			}
		}},
		{name: "empty", raw: func([]byte) []byte { return nil }, wantErr: ErrNotBzImage},
		{name: "ELF file", raw: func([]byte) []byte { return append([]byte("\x7fELF"), make([]byte, 4096)...) }, wantErr: ErrNotBzImage},
		{name: "bad boot flag", raw: func(d []byte) []byte { d[offBootFlag] = 0; return d }, wantErr: ErrNotBzImage},
		{name: "bad magic", raw: func(d []byte) []byte { d[offHeaderMagic] = 'X'; return d }, wantErr: ErrNotBzImage},
		{name: "truncated header", raw: func(d []byte) []byte { return d[:0x240] }, wantErr: ErrNotBzImage},
		{name: "short jump", raw: func(d []byte) []byte { d[offJump+1] = 0x20; return d }, wantErr: ErrNotBzImage},
		{name: "protocol 2.11", mutate: func(f *fakeKernel) { f.version = 0x020B }, wantErr: ErrProtocol},
		{name: "no 64-bit entry", mutate: func(f *fakeKernel) { f.xloadflags() }, wantErr: ErrProtocol},
		{name: "zImage", mutate: func(f *fakeKernel) { f.loadFlags = 0 }, wantErr: ErrNotBzImage},
		{name: "bad alignment", mutate: func(f *fakeKernel) { f.align = 0x300000 }, wantErr: ErrNotBzImage},
		{name: "no kernel after setup", mutate: func(f *fakeKernel) { f.kernelSize = 0 }, wantErr: ErrNotBzImage},
		{name: "setup sectors past the end", mutate: func(f *fakeKernel) { f.kernelSize = 0 },
			raw: func(d []byte) []byte { d[offSetupSects] = 200; return d }, wantErr: ErrNotBzImage},
		{name: "init_size too small", mutate: func(f *fakeKernel) { f.initSize = 0x1000 }, wantErr: ErrNotBzImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good
			if tt.mutate != nil {
				tt.mutate(&f)
			}
			data := f.bytes()
			if tt.raw != nil {
				data = tt.raw(data)
			}
			b, err := ParseBzImage(data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, b)
		})
	}
}

func (f *fakeKernel) xloadflags() { f.xloadFlags = XLFCanAbove4G }

// realKernels returns the Debian kernels installed on this machine.
func realKernels(t testing.TB) []string {
	t.Helper()
	paths, _ := filepath.Glob("/boot/vmlinuz-*")
	if len(paths) == 0 {
		t.Skip("no /boot/vmlinuz-* on this machine (make test installs linux-image-cloud-amd64)")
	}
	return paths
}

func TestParseBzImageRealKernels(t *testing.T) {
	for _, p := range realKernels(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ParseBzImage(data)
			if err != nil {
				t.Fatal(err)
			}
			if b.Protocol < 0x020F {
				t.Errorf("protocol %#x, Debian 12 kernels speak 2.15", b.Protocol)
			}
			if !b.Relocatable || b.PrefAddress != 0x1000000 || b.KernelAlignment != 0x200000 {
				t.Errorf("relocatable %v pref %#x align %#x", b.Relocatable, b.PrefAddress, b.KernelAlignment)
			}
			if b.XLoadFlags&XLFKernel64 == 0 {
				t.Errorf("xloadflags %#x", b.XLoadFlags)
			}
			wantKernel := len(data) - (b.SetupSects+1)*sectorSize
			if len(b.Kernel) != wantKernel || uint64(b.InitSize) < uint64(len(b.Kernel)) {
				t.Errorf("kernel %d bytes (want %d), init_size %#x", len(b.Kernel), wantKernel, b.InitSize)
			}
			if b.CmdlineSize < 255 {
				t.Errorf("cmdline_size %d", b.CmdlineSize)
			}
			// The header's own end marker: "HdrS" sits at offset 0x202-0x1F1.
			if string(b.Header[0x202-0x1F1:0x206-0x1F1]) != "HdrS" {
				t.Errorf("header copy does not start at 0x1F1")
			}
		})
	}
}

func FuzzParseBzImage(f *testing.F) {
	f.Add(defaultFake().bytes())
	nr := defaultFake()
	nr.relocatable = false
	f.Add(nr.bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBzImage(data)
		if err != nil {
			if !errors.Is(err, ErrNotBzImage) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		if len(b.Kernel) == 0 || uint64(b.InitSize) < uint64(len(b.Kernel)) || b.XLoadFlags&XLFKernel64 == 0 {
			t.Fatalf("accepted inconsistent image: %+v", b)
		}
		if b.MemoryEnd() < b.LoadAddr()+uint64(len(b.Kernel)) {
			t.Fatalf("MemoryEnd %#x before the kernel's end", b.MemoryEnd())
		}
		if len(b.Header) < minHeaderEnd-hdrStart || len(b.Header) > hdrMaxEnd-hdrStart {
			t.Fatalf("header length %d", len(b.Header))
		}
	})
}

// patternByte is the fake kernel's content at file offset i.
func patternByte(i int) byte { return byte(i*7 + 3) }
