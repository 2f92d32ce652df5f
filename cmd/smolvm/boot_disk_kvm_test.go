package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/disk"
	"github.com/smolvm/smolvm/vmm/guest"
)

// TestKVMBootCLIDisks runs `smolvm boot` with three --disk flags, one per
// mode. In the guest: vda, vdb, vdc in flag order with their names as
// serials, vdc read-only; a file written to vda lands in its image; one
// written to vdb lands in the overlay (the base unchanged); a raw write to
// vdc fails and its image is unchanged.
func TestKVMBootCLIDisks(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	rw, cow, ro := ext4Image(t), ext4Image(t), ext4Image(t) // exec_kvm_test.go
	cowBefore, err := os.ReadFile(cow)
	if err != nil {
		t.Fatal(err)
	}
	roBefore, err := os.ReadFile(ro)
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "cow.overlay")

	script := `
for d in vda vdb vdc; do echo "VT:$d=$(cat /sys/block/$d/serial):ro=$(cat /sys/block/$d/ro)"; done
mkdir -p /a /b
mount -t ext4 /dev/vda /a && echo from-guest-rw > /a/g.txt && umount /a && echo VT:a-ok
mount -t ext4 /dev/vdb /b && echo from-guest-cow > /b/g.txt && umount /b && echo VT:b-ok
dd if=/dev/zero of=/dev/vdc bs=4096 count=1 2>/dev/null && echo VT:c-written || echo VT:c-refused
sync
`
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := startConsole(t, ctx, smolvmBin(t), "boot", "--cpus", "1", "--mem", "256M", "--net", "none",
		"--disk", "first="+rw, "--disk", "second="+cow+",cow,overlay="+overlay, "--disk", "third="+ro+",ro",
		"--cmdline", "console=ttyS0 panic=-1 quiet "+guest.CmdParam(script))
	r.waitFor(t, guest.ExitMarkerPrefix, 3*time.Minute)
	if code := r.finish(t, time.Minute); code != 0 {
		t.Fatalf("smolvm boot exited %d:\n%s", code, tailLines(r.all.String()))
	}
	out := r.all.String()
	for _, want := range []string{"VT:vda=first:ro=0", "VT:vdb=second:ro=0", "VT:vdc=third:ro=1", "VT:a-ok", "VT:b-ok", "VT:c-refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Fatalf("console:\n%s", tailLines(out))
	}
	cat := func(img string) string {
		b, err := exec.Command("debugfs", "-R", "cat /g.txt", img).Output()
		if err != nil {
			t.Fatalf("debugfs %s: %v", img, err)
		}
		return string(b)
	}
	if got := cat(rw); got != "from-guest-rw\n" {
		t.Errorf("rw image holds %q", got)
	}
	if b, _ := os.ReadFile(cow); !bytes.Equal(b, cowBefore) {
		t.Error("the cow base changed")
	}
	if b, _ := os.ReadFile(ro); !bytes.Equal(b, roBefore) {
		t.Error("the read-only image changed")
	}
	o, err := disk.Open(cow, disk.ModeCOW, overlay)
	if err != nil {
		t.Fatal(err)
	}
	merged := make([]byte, o.Size())
	_, err = o.ReadAt(merged, 0)
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, "merged.img")
	if err := os.WriteFile(mp, merged, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := cat(mp); got != "from-guest-cow\n" {
		t.Errorf("cow base + overlay holds %q", got)
	}
}
