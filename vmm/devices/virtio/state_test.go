package virtio_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/virtio"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
)

func TestSaveRestoreRoundTripWithInFlightChains(t *testing.T) {
	d, _ := initEcho(t, vt.Options{Features: virtio.FeatureEventIdx | virtio.FeatureIndirectDesc})
	for range 5 {
		echo(t, d, []byte("warm up"), true)
	}
	if _, err := d.Trans.Save(); !errors.Is(err, virtio.ErrNotPaused) {
		t.Fatalf("Save of a running device: %v, want ErrNotPaused", err)
	}
	d.Trans.Pause()
	// A chain made available while paused stays in flight (not taken).
	q := d.Queues[0]
	head := q.Add([]vt.Buf{{Data: []byte("in flight")}, {Len: 9, Write: true}}, false)
	q.Kick()
	if u := q.Collect(); len(u) != 0 {
		t.Fatalf("paused device used %+v", u)
	}
	d.MaskVector(2, true)
	st, err := d.Trans.Save()
	if err != nil {
		t.Fatal(err)
	}
	if qs := st.Queues[0]; qs.LastAvail != 5 || qs.UsedIdx != 5 || !qs.Ready || qs.MSIXVector != 1 {
		t.Fatalf("saved queue %+v", qs)
	}

	// A second machine: same memory (as a snapshot restores RAM), a fresh
	// transport; PCI config first, then the transport.
	dev2 := &echoDev{}
	d2 := vt.NewDriver(t, dev2)
	copy(d2.Mem.Mem, d.Mem.Mem)
	if err := d2.Host.Restore(d.Host.Save()); err != nil {
		t.Fatal(err)
	}
	if err := d2.Trans.Restore(st); err != nil {
		t.Fatal(err)
	}
	st2, err := func() (virtio.State, error) { d2.Trans.Pause(); defer d2.Trans.Resume(); return d2.Trans.Save() }()
	if err != nil {
		t.Fatal(err)
	}
	// The restored device may already have taken the in-flight chain.
	if q := &st2.Queues[0]; q.LastAvail == 6 && q.UsedIdx == 6 {
		q.LastAvail, q.UsedIdx, q.SignalledIdx, q.Pending = st.Queues[0].LastAvail, st.Queues[0].UsedIdx, st.Queues[0].SignalledIdx, st.Queues[0].Pending
	}
	if !reflect.DeepEqual(st, st2) {
		t.Fatalf("restored state differs:\n%+v\n%+v", st, st2)
	}
	// The in-flight chain completes on the restored device.
	q2 := *q
	q2.Rebind(d2)
	u := q2.WaitUsed(1, wait)
	if len(u) != 1 || u[0].ID != uint32(head) || u[0].Len != 9 {
		t.Fatalf("in-flight chain after restore: %+v (status %#x, %v)", u, d2.Status(), d2.Trans.Err())
	}
	if got := string(d2.Read(q.BufAddrs[head][1], 9)); got != "in flight" {
		t.Fatalf("in-flight chain got %q", got)
	}
	echo(t, d2.WithQueues(&q2), []byte("after restore"), true)
	if m := d2.IRQ.MSIs(); len(m) == 0 || m[0].Data != 0x41 {
		t.Fatalf("restored MSI-X table: %+v", m)
	}
	if a, _ := dev2.counts(); a != 1 {
		t.Fatalf("restored device activated %d times", a)
	}
}

func TestRestoreRejectsMismatch(t *testing.T) {
	d, _ := initEcho(t, vt.Options{})
	d.Trans.Pause()
	good, err := d.Trans.Save()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*virtio.State)
	}{
		{"type", func(s *virtio.State) { s.DeviceType = 2 }},
		{"queues", func(s *virtio.State) { s.Queues = s.Queues[:1] }},
		{"msix", func(s *virtio.State) { s.MSIXTable = s.MSIXTable[:1] }},
		{"features", func(s *virtio.State) { s.DriverFeatures |= 1 << 50 }},
		{"size", func(s *virtio.State) { s.Queues[0].Size = 1024 }},
		{"in flight", func(s *virtio.State) { s.Queues[0].LastAvail = s.Queues[0].UsedIdx + 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := good
			st.Queues = append([]virtio.QueueState(nil), good.Queues...)
			tc.mod(&st)
			d2 := vt.NewDriver(t, &echoDev{})
			if err := d2.Trans.Restore(st); !errors.Is(err, virtio.ErrBadState) {
				t.Fatalf("Restore: %v, want ErrBadState", err)
			}
		})
	}
}
