package blk_test

import (
	"testing"

	"github.com/smolvm/smolvm/vmm/devices/virtio/blk"
	vt "github.com/smolvm/smolvm/vmm/devices/virtio/virtiotest"
	"github.com/smolvm/smolvm/vmm/disk"
)

// BenchmarkRead128K measures 128 KiB reads (Linux's default readahead unit)
// through the whole path: avail ring, chain, disk (page cache), guest
// buffer, used ring, MSI-X; zero-copy vs copying guest memory.
func BenchmarkRead128K(b *testing.B) {
	for _, copying := range []bool{false, true} {
		b.Run(map[bool]string{false: "zero-copy", true: "copying"}[copying], func(b *testing.B) {
			const sectors = 16 << 11 // 16 MiB image
			f := newFixtureMemTB(b, disk.ModeRW, sectors, copying)
			q := f.d.Queues[0]
			// One chain, reused: header, 128 KiB, status.
			head := q.Add([]vt.Buf{{Data: header(blk.TypeIn, 0)}, {Len: 128 << 10, Write: true}, {Len: 1, Write: true}}, false)
			q.Kick()
			if u := q.WaitUsed(1, wait); len(u) != 1 {
				b.Fatal("no answer")
			}
			b.SetBytes(128 << 10)
			b.ResetTimer()
			for i := range b.N {
				q.Publish(head)
				q.Kick()
				if u := q.WaitUsed(1, wait); len(u) != 1 {
					b.Fatalf("request %d: no answer", i)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
