package rng_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	"github.com/smolvm/smolvm/vmm/devices/virtio/rng"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

// countingReader yields 0, 1, 2, ... so the test can check what reached the
// guest.
type countingReader struct{ n byte }

func (c *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestFillsBuffers(t *testing.T) {
	for _, tc := range []struct {
		name string
		lens []int
		want uint32
	}{
		{"one page", []int{4096}, 4096},
		{"split", []int{10, 20}, 30},
		{"capped", []int{rng.MaxRequest + 100}, rng.MaxRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := rng.New(&countingReader{})
			d := vt.NewDriver(t, dev)
			if err := d.Init(vt.Options{}); err != nil {
				t.Fatal(err)
			}
			var bufs []vt.Buf
			for _, l := range tc.lens {
				bufs = append(bufs, vt.Buf{Len: l, Write: true})
			}
			q := d.Queues[0]
			head := q.Add(bufs, false)
			q.Kick()
			u := q.WaitUsed(1, 5*time.Second)
			if len(u) != 1 || u[0].Len != tc.want {
				t.Fatalf("used %+v, want len %d", u, tc.want)
			}
			got := d.Read(q.BufAddrs[head][0], min(tc.lens[0], int(tc.want)))
			for i, b := range got {
				if b != byte(i) {
					t.Fatalf("byte %d is %d", i, b)
				}
			}
			if dev.Given() != uint64(tc.want) {
				t.Fatalf("given %d", dev.Given())
			}
		})
	}
}

func TestHostRandomness(t *testing.T) {
	d := vt.NewDriver(t, rng.New(nil))
	if err := d.Init(vt.Options{}); err != nil {
		t.Fatal(err)
	}
	q := d.Queues[0]
	head := q.Add([]vt.Buf{{Len: 64, Write: true}}, false)
	q.Kick()
	if u := q.WaitUsed(1, 5*time.Second); len(u) != 1 {
		t.Fatal("no answer")
	}
	if bytes.Equal(d.Read(q.BufAddrs[head][0], 64), make([]byte, 64)) {
		t.Fatal("64 zero bytes from crypto/rand")
	}
}

func TestSourceFailureIsDeviceError(t *testing.T) {
	d := vt.NewDriver(t, rng.New(failingReader{}))
	if err := d.Init(vt.Options{}); err != nil {
		t.Fatal(err)
	}
	q := d.Queues[0]
	q.Add([]vt.Buf{{Len: 16, Write: true}}, false)
	q.Kick()
	deadline := time.Now().Add(5 * time.Second)
	for d.Status()&virtio.StatusDeviceNeedsReset == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no DEVICE_NEEDS_RESET")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestState(t *testing.T) {
	dev := rng.New(nil)
	if err := dev.Restore(dev.Save()); err != nil {
		t.Fatal(err)
	}
	if err := dev.Restore(rng.State{Version: 9}); !errors.Is(err, virtio.ErrBadState) {
		t.Fatalf("restore of version 9: %v", err)
	}
}
