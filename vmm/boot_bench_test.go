package vmm

import (
	"context"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
)

// BenchmarkBootToReady boots the default guest in-process (2 vCPUs, 256 MiB)
// until /init prints guest.ReadyMarker, then lets it power off. It reports
// New-to-ready seconds per boot. In the lab:
//
//	go run ./internal/lab/cmd/labrun -- sh -c 'cd vmm && go test -run ^$ -bench BootToReady -benchtime 3x'
func BenchmarkBootToReady(b *testing.B) {
	kvmtest.Require(b)
	cfg := guestConfig(b)
	cfg.Cmdline = "console=ttyS0 panic=-1 quiet " + guest.CmdParam("true")
	var toReady time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		console := newSyncBuffer(guest.ReadyMarker)
		cfg.Console = console
		start := time.Now()
		m, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		select {
		case <-console.seen:
			toReady += time.Since(start)
		case err := <-done:
			b.Fatalf("stopped before ready: %v\n%s", err, tail(console.String()))
		}
		err = <-done
		cancel()
		m.Close()
		if err != nil || m.StopReason() != StopPowerOff {
			b.Fatalf("boot %d: %v (%v)\n%s", i, err, m.StopReason(), tail(console.String()))
		}
	}
	b.ReportMetric(toReady.Seconds()/float64(b.N), "s-to-ready/op")
	b.Logf("label: %s", kvmtest.Label())
}
