package blk_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/devices/virtio/blk"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
	"github.com/smolvm/smolvm/vmm/disk"
)

const wait = 5 * time.Second

func header(typ uint32, sector uint64) []byte {
	h := make([]byte, 16)
	binary.LittleEndian.PutUint32(h, typ)
	binary.LittleEndian.PutUint64(h[8:], sector)
	return h
}

type fixture struct {
	d     *vt.Driver
	dev   *blk.Device
	image []byte
	path  string
}

func newFixture(t *testing.T, mode disk.Mode, sectors int) *fixture {
	t.Helper()
	return newFixtureMem(t, mode, sectors, false)
}

// newFixtureMem chooses guest memory the device can slice (zero-copy) or
// only copy.
func newFixtureMem(t *testing.T, mode disk.Mode, sectors int, copying bool) *fixture {
	t.Helper()
	return newFixtureMemTB(t, mode, sectors, copying)
}

func newFixtureMemTB(t testing.TB, mode disk.Mode, sectors int, copying bool) *fixture {
	t.Helper()
	img := make([]byte, sectors*512)
	for i := range img {
		img[i] = byte(i*7 + i/512)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	dk, err := disk.Open(p, mode, filepath.Join(dir, "disk.overlay"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dk.Close() })
	dev, err := blk.New(blk.Config{Disk: dk, ID: "smolvm-test-disk"})
	if err != nil {
		t.Fatal(err)
	}
	newDriver := vt.NewDriver
	if copying {
		newDriver = vt.NewCopyingDriver
	}
	d := newDriver(t, dev)
	if err := d.Init(vt.Options{Features: ^uint64(0)}); err != nil {
		t.Fatal(err)
	}
	return &fixture{d: d, dev: dev, image: img, path: p}
}

// do runs one request and returns its status, used length and data buffer.
func (f *fixture) do(t *testing.T, bufs []vt.Buf) (status byte, used uint32, data []byte) {
	t.Helper()
	q := f.d.Queues[0]
	head := q.Add(bufs, len(bufs) > 2)
	q.Kick()
	u := q.WaitUsed(1, wait)
	if len(u) != 1 || u[0].ID != uint32(head) {
		t.Fatalf("used %+v (status %#x, %v)", u, f.d.Status(), f.d.Trans.Err())
	}
	addrs := q.BufAddrs[head]
	last := bufs[len(bufs)-1]
	status = f.d.Read(addrs[len(addrs)-1]+uint64(last.Len)-1, 1)[0]
	if len(bufs) == 3 && bufs[1].Write {
		data = f.d.Read(addrs[1], bufs[1].Len)
	}
	return status, u[0].Len, data
}

func TestConfigAndFeatures(t *testing.T) {
	for _, tc := range []struct {
		mode disk.Mode
		ro   bool
	}{{disk.ModeRW, false}, {disk.ModeRO, true}, {disk.ModeCOW, false}} {
		f := newFixture(t, tc.mode, 64)
		if c := f.d.DeviceConfig(0, 8); c != 64 {
			t.Fatalf("%s: capacity %d sectors, want 64", tc.mode, c)
		}
		if got := f.d.Features&blk.FeatureRO != 0; got != tc.ro {
			t.Fatalf("%s: RO feature %v", tc.mode, got)
		}
		if f.d.Features&blk.FeatureFlush == 0 {
			t.Fatalf("%s: FLUSH not negotiated", tc.mode)
		}
	}
}

func TestRequests(t *testing.T) {
	for _, copying := range []bool{false, true} {
		t.Run(map[bool]string{false: "zero-copy", true: "copying"}[copying], func(t *testing.T) {
			testRequests(t, newFixtureMem(t, disk.ModeRW, 64, copying))
		})
	}
}

func testRequests(t *testing.T, f *fixture) {
	pattern := bytes.Repeat([]byte("smolvm!!"), 128) // 1 KiB = 2 sectors
	for _, tc := range []struct {
		name   string
		bufs   []vt.Buf
		status byte
		used   uint32
		data   []byte
	}{
		{"read sector 3", []vt.Buf{{Data: header(blk.TypeIn, 3)}, {Len: 1024, Write: true}, {Len: 1, Write: true}}, blk.StatusOK, 1025, f.image[3*512 : 5*512]},
		{"write sector 10", []vt.Buf{{Data: header(blk.TypeOut, 10)}, {Data: pattern}, {Len: 1, Write: true}}, blk.StatusOK, 1, nil},
		{"read back", []vt.Buf{{Data: header(blk.TypeIn, 10)}, {Len: 1024, Write: true}, {Len: 1, Write: true}}, blk.StatusOK, 1025, pattern},
		{"flush", []vt.Buf{{Data: header(blk.TypeFlush, 0)}, {Len: 1, Write: true}}, blk.StatusOK, 1, nil},
		{"get id", []vt.Buf{{Data: header(blk.TypeGetID, 0)}, {Len: 20, Write: true}, {Len: 1, Write: true}}, blk.StatusOK, 21, append([]byte("smolvm-test-disk"), 0, 0, 0, 0)},
		{"read past end", []vt.Buf{{Data: header(blk.TypeIn, 63)}, {Len: 1024, Write: true}, {Len: 1, Write: true}}, blk.StatusIOErr, 1, make([]byte, 1024)},
		{"write past end", []vt.Buf{{Data: header(blk.TypeOut, 1<<40)}, {Data: pattern}, {Len: 1, Write: true}}, blk.StatusIOErr, 1, nil},
		{"unaligned length", []vt.Buf{{Data: header(blk.TypeIn, 0)}, {Len: 100, Write: true}, {Len: 1, Write: true}}, blk.StatusIOErr, 1, make([]byte, 100)},
		{"unknown type", []vt.Buf{{Data: header(77, 0)}, {Len: 1, Write: true}}, blk.StatusUnsupp, 1, nil},
		{"short header", []vt.Buf{{Data: []byte{0, 0, 0}}, {Len: 1, Write: true}}, blk.StatusIOErr, 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, used, data := f.do(t, tc.bufs)
			if st != tc.status || used != tc.used {
				t.Fatalf("status %d used %d, want %d %d", st, used, tc.status, tc.used)
			}
			if tc.data != nil && !bytes.Equal(data, tc.data) {
				t.Fatalf("data %q..., want %q...", data[:16], tc.data[:16])
			}
		})
	}
	img, _ := os.ReadFile(f.path)
	if !bytes.Equal(img[10*512:12*512], pattern) {
		t.Fatal("write did not reach the image")
	}
	if s := f.dev.Stats(); s.Reads != 2 || s.Writes != 1 || s.Flushes != 1 || s.Errors != 5 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReadOnlyAndCOW(t *testing.T) {
	ro := newFixture(t, disk.ModeRO, 16)
	if st, _, _ := ro.do(t, []vt.Buf{{Data: header(blk.TypeOut, 0)}, {Data: make([]byte, 512)}, {Len: 1, Write: true}}); st != blk.StatusIOErr {
		t.Fatalf("write to read-only disk: status %d", st)
	}
	cow := newFixture(t, disk.ModeCOW, 16)
	data := bytes.Repeat([]byte{0x5a}, 512)
	if st, _, _ := cow.do(t, []vt.Buf{{Data: header(blk.TypeOut, 2)}, {Data: data}, {Len: 1, Write: true}}); st != blk.StatusOK {
		t.Fatalf("cow write: status %d", st)
	}
	if st, _, got := cow.do(t, []vt.Buf{{Data: header(blk.TypeIn, 2)}, {Len: 512, Write: true}, {Len: 1, Write: true}}); st != 0 || !bytes.Equal(got, data) {
		t.Fatalf("cow read back: status %d", st)
	}
	if img, _ := os.ReadFile(cow.path); !bytes.Equal(img, cow.image) {
		t.Fatal("cow write reached the base image")
	}
}

func TestNoStatusByteIsDeviceError(t *testing.T) {
	f := newFixture(t, disk.ModeRW, 16)
	q := f.d.Queues[0]
	q.Add([]vt.Buf{{Data: header(blk.TypeIn, 0)}}, false)
	q.Kick()
	deadline := time.Now().Add(wait)
	for f.d.Status()&virtio.StatusDeviceNeedsReset == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no DEVICE_NEEDS_RESET")
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(f.d.Trans.Err(), virtio.ErrBadChain) {
		t.Fatalf("error %v", f.d.Trans.Err())
	}
}

func TestStateRoundTrip(t *testing.T) {
	f := newFixture(t, disk.ModeRW, 16)
	st := f.dev.Save()
	if err := f.dev.Restore(st); err != nil {
		t.Fatal(err)
	}
	other := newFixture(t, disk.ModeRW, 32)
	if err := other.dev.Restore(st); !errors.Is(err, virtio.ErrBadState) {
		t.Fatalf("restore onto a bigger disk: %v", err)
	}
	ro := newFixture(t, disk.ModeRO, 16)
	if err := ro.dev.Restore(st); !errors.Is(err, virtio.ErrBadState) {
		t.Fatalf("restore onto a read-only disk: %v", err)
	}
}

// TestScatteredIO moves sectors through several buffers of odd sizes (a
// sector split across buffers), both ways, on both memory paths.
func TestScatteredIO(t *testing.T) {
	for _, copying := range []bool{false, true} {
		f := newFixtureMem(t, disk.ModeRW, 32, copying)
		data := make([]byte, 3*512)
		for i := range data {
			data[i] = byte(i * 13)
		}
		parts := [][]byte{data[:100], data[100:612], data[612:]}
		st, _, _ := f.do(t, []vt.Buf{{Data: header(blk.TypeOut, 5)}, {Data: parts[0]}, {Data: parts[1]}, {Data: parts[2]}, {Len: 1, Write: true}})
		if st != blk.StatusOK {
			t.Fatalf("copying=%v: scattered write status %d", copying, st)
		}
		q := f.d.Queues[0]
		head := q.Add([]vt.Buf{{Data: header(blk.TypeIn, 5)}, {Len: 700, Write: true}, {Len: 836, Write: true}, {Len: 1, Write: true}}, true)
		q.Kick()
		if u := q.WaitUsed(1, wait); len(u) != 1 || u[0].Len != 1537 {
			t.Fatalf("copying=%v: used %+v", copying, u)
		}
		a := q.BufAddrs[head]
		got := append(f.d.Read(a[1], 700), f.d.Read(a[2], 836)...)
		if !bytes.Equal(got, data) {
			t.Fatalf("copying=%v: scattered read differs", copying)
		}
	}
}
