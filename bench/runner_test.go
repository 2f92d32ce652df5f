package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeMethod returns a method whose runs are recorded in order and take
// ready seconds each; shared preparations are counted.
func fakeMethod(name string, ready time.Duration, order *[]string, preps map[string]int, key string, prepErr error) Method {
	m := Method{
		Name:  name,
		Desc:  "fake",
		check: func(*Guest) error { return nil },
		size:  func(*Guest) int64 { return 123 },
		start: func(_ context.Context, g *Guest, p *prepared, id string) (*Instance, error) {
			*order = append(*order, fmt.Sprintf("%s/%d/%s", name, g.MemBytes>>20, id))
			if name == MethodMmap && id == "1" {
				return nil, errors.New("mmap fell over")
			}
			stopped := false
			return &Instance{Ready: ready, PIDs: []int{os.Getpid()}, RAMRead: 4096, Faults: Unknown,
				Stop: func() error {
					if stopped {
						return errors.New("stopped twice")
					}
					stopped = true
					return nil
				}}, nil
		},
	}
	if key != "" {
		m.prepareKey = key
		m.prepare = func(_ context.Context, g *Guest) (*prepared, error) {
			preps[fmt.Sprintf("%s/%d", key, g.MemBytes>>20)]++
			if prepErr != nil {
				return nil, prepErr
			}
			return &prepared{Path: "/x", Size: 999, cleanup: func() {}}, nil
		}
	}
	return m
}

func TestRunOrchestration(t *testing.T) {
	var order []string
	preps := map[string]int{}
	skip := fakeMethod(MethodQEMURestore, time.Second, &order, preps, "", nil)
	skip.check = func(*Guest) error { return fmt.Errorf("%w: no QEMU here", errSkip) }
	rep, err := Run(context.Background(), Options{
		Methods: []Method{
			fakeMethod(MethodBoot, 2*time.Second, &order, preps, "", nil),
			fakeMethod(MethodUffd, 100*time.Millisecond, &order, preps, "snap", nil),
			fakeMethod(MethodMmap, 200*time.Millisecond, &order, preps, "snap", nil),
			fakeMethod(MethodQEMUBoot, time.Second, &order, preps, "broken", errors.New("no disk")),
			skip,
		},
		Mems: []int64{256 << 20, 1 << 30}, Runs: 2, Clones: 2, CPUs: 1, Accel: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOrder := "boot/256/0 uffd/256/0 mmap/256/0 boot/256/1 uffd/256/1 mmap/256/1 " +
		"boot/256/clone0 boot/256/clone1 uffd/256/clone0 uffd/256/clone1 " +
		"boot/1024/0 uffd/1024/0 mmap/1024/0 boot/1024/1 uffd/1024/1 mmap/1024/1 " +
		"boot/1024/clone0 boot/1024/clone1 uffd/1024/clone0 uffd/1024/clone1"
	if got := strings.Join(order, " "); got != wantOrder {
		t.Errorf("run order:\n got %s\nwant %s", got, wantOrder)
	}
	if preps["snap/256"] != 1 || preps["snap/1024"] != 1 || preps["broken/256"] != 1 {
		t.Errorf("preparations %v: want one per key and size", preps)
	}
	if len(rep.Env.Skipped) != 1 || rep.Env.Skipped[0].Reason != "no QEMU here" {
		t.Errorf("skipped %+v", rep.Env.Skipped)
	}
	if len(rep.Results) != 8 {
		t.Fatalf("%d results, want 4 methods x 2 sizes", len(rep.Results))
	}
	for _, r := range rep.Results {
		switch r.Method {
		case MethodBoot:
			if r.Error != "" || r.Ready.N != 2 || r.VsBoot != 1 || r.SizeBytes != 123 || r.Clones == nil || r.Clones.N != 2 || r.PSSBytes <= 0 {
				t.Errorf("boot: %+v", r)
			}
		case MethodUffd:
			if r.Error != "" || r.VsBoot != 0.05 || r.SizeBytes != 999 || r.RAMReadBytes != 4096 || r.Faults != Unknown {
				t.Errorf("uffd: %+v", r)
			}
		case MethodMmap:
			if !strings.Contains(r.Error, "mmap fell over") || r.Clones != nil {
				t.Errorf("mmap: want its second run's error, no clones: %+v", r)
			}
		case MethodQEMUBoot:
			if !strings.Contains(r.Error, "preparing broken: no disk") {
				t.Errorf("qemu-boot: %+v", r)
			}
		}
	}
	if rep.Env.PageCache != "warm" || rep.Env.Runs != 2 || rep.Env.Accel != "test" {
		t.Errorf("env %+v", rep.Env)
	}
}
