package vmm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/disk"
	"github.com/smolvm/smolvm/vmm/guest"
)

// mkfsImage makes an ext4 image of size bytes holding hello.txt.
func mkfsImage(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	src := filepath.Join(dir, name+".d")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, name)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, img, strconv.FormatInt(size>>10, 10)+"k").CombinedOutput()
	if err != nil {
		t.Fatalf("mkfs.ext4 (e2fsprogs): %v\n%s", err, out)
	}
	return img
}

// debugfsCat reads a file out of an ext4 image on the host.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s in %s: %v", path, img, err)
	}
	return string(out)
}

// stopOnCleanup makes a failing test stop g's machine and wait for Run to
// return before the cleanups registered earlier close it (Close must not run
// while vCPUs do).
func stopOnCleanup(t *testing.T, g *runningGuest) {
	t.Cleanup(func() {
		if g.m.StopReason() != StopNone {
			return
		}
		g.m.Stop()
		select {
		case <-g.done:
		case <-time.After(StopTimeout + 5*time.Second):
		}
	})
}

// median of three or more durations.
func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	slices.Sort(s)
	return s[len(s)/2]
}

// hostRead reads a file sequentially in 1 MiB reads, after dropping it from
// the page cache when cold is set, and returns the time taken.
func hostRead(t *testing.T, path string, cold bool) time.Duration {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cold {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for {
		n, err := f.Read(buf)
		if n == 0 || err != nil {
			break
		}
	}
	return time.Since(start)
}

var uptimePair = regexp.MustCompile(`VT:dd(\d)=([0-9.]+):([0-9.]+)`)

// TestKVMVirtioDisksAndRNG boots the default guest with two 64 MiB ext4
// disks, vda plain (rw) and vdb copy-on-write, and the entropy device. The
// guest reads vda's serial (GET_ID), mounts both disks, reads a file the
// host put there, writes a file to each and syncs, reads /dev/hwrng and times
// a sequential read of all of vda. Then the host finds the vda file in the
// image, vdb's image unchanged and its file in base + overlay.
func TestKVMVirtioDisksAndRNG(t *testing.T) {
	kvmtest.Require(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatal("mkfs.ext4 not found: make deps installs e2fsprogs")
	}
	dir := t.TempDir()
	const size = 64 << 20
	vda := mkfsImage(t, dir, "vda.img", size)
	vdb := mkfsImage(t, dir, "vdb.img", size)
	vdbBefore, err := os.ReadFile(vdb)
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "vdb.overlay")

	script := `
echo "VT:serial=$(cat /sys/block/vda/serial)"
echo "VT:ro=$(cat /sys/block/vda/ro)"
mkdir -p /mnt/a /mnt/b
mount -t ext4 /dev/vda /mnt/a && echo "VT:hello=$(cat /mnt/a/hello.txt)"
echo guest-wrote-this-rw > /mnt/a/guest.txt && sync && umount /mnt/a && echo VT:wrote-a
mount -t ext4 /dev/vdb /mnt/b && echo guest-wrote-this-cow > /mnt/b/guest.txt && sync && umount /mnt/b && echo VT:wrote-b
echo "VT:rng=$(cat /sys/class/misc/hw_random/rng_current)"
grep virtio /proc/interrupts | sed 's/^/VT:irq /'
echo "VT:rngbytes=$(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
for i in 1 2 3; do
	echo 3 > /proc/sys/vm/drop_caches
	read a _ < /proc/uptime
	dd if=/dev/vda of=/dev/null bs=1M 2>/dev/null
	read b _ < /proc/uptime
	echo "VT:dd$i=$a:$b"
done
`
	cfg := guestConfig(t)
	cfg.Console = newSyncBuffer("")
	cfg.Cmdline += " " + guest.CmdParam(script)
	cfg.Disks = []DiskConfig{
		{Name: "smolvm-vda", Path: vda},
		{Name: "smolvm-vdb", Path: vdb, Mode: disk.ModeCOW, OverlayPath: overlay},
	}
	console := cfg.Console.(*syncBuffer)
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	start := time.Now()
	err = runMachine(t, m, 4*time.Minute)
	out := console.String()
	saveConsole(t, out)
	if err != nil {
		t.Fatalf("Run: %v\nconsole:\n%s", err, tail(out))
	}
	if m.StopReason() != StopPowerOff {
		t.Fatalf("stop reason %v\nconsole:\n%s", m.StopReason(), tail(out))
	}
	for _, want := range []string{"VT:serial=smolvm-vda", "VT:ro=0", "VT:hello=hello from the host", "VT:wrote-a", "VT:wrote-b", "VT:rng=virtio_rng."} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if rb := regexp.MustCompile(`VT:rngbytes=([0-9a-f]*)`).FindStringSubmatch(out); rb == nil || len(rb[1]) != 64 || rb[1] == strings.Repeat("0", 64) {
		t.Errorf("hwrng bytes: %v", rb)
	}
	if !regexp.MustCompile(`VT:irq .*MSI.*virtio0-config`).MatchString(out) {
		t.Errorf("vda does not use MSI-X (no virtio0-config vector in /proc/interrupts)")
	}
	var notifies uint64 // queue notifications that came by ioeventfd
	for _, c := range m.virtio[0].notify.counts() {
		notifies += c
	}
	if notifies == 0 {
		t.Error("no vda notification came through its ioeventfd")
	}
	if t.Failed() {
		t.Fatalf("console:\n%s", tail(out))
	}
	if err := m.Close(); err != nil { // flushes the overlay map
		t.Fatal(err)
	}

	if got := debugfsCat(t, vda, "/guest.txt"); got != "guest-wrote-this-rw\n" {
		t.Errorf("vda image holds %q, want the guest's file", got)
	}
	if after, _ := os.ReadFile(vdb); !bytes.Equal(after, vdbBefore) {
		t.Error("the cow disk's base image changed")
	}
	o, err := disk.Open(vdb, disk.ModeCOW, overlay)
	if err != nil {
		t.Fatal(err)
	}
	merged := make([]byte, size)
	_, err = o.ReadAt(merged, 0)
	blocks := o.(*disk.Overlay).WrittenBlocks()
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	mergedPath := filepath.Join(dir, "vdb.merged")
	if err := os.WriteFile(mergedPath, merged, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := debugfsCat(t, mergedPath, "/guest.txt"); got != "guest-wrote-this-cow\n" {
		t.Errorf("base + overlay holds %q, want the guest's file", got)
	}
	if got := debugfsCat(t, vdb, "/guest.txt"); got != "" {
		t.Errorf("the base alone holds %q", got)
	}

	// Sequential read, median of 3: the guest's dd of all of /dev/vda (page
	// cache dropped first) vs this process reading the image file (in the
	// page cache, or tmpfs in the lab: the same source the device reads).
	var guestRuns, hostRuns []time.Duration
	for _, mt := range uptimePair.FindAllStringSubmatch(out, -1) {
		a, _ := strconv.ParseFloat(mt[2], 64)
		b, _ := strconv.ParseFloat(mt[3], 64)
		guestRuns = append(guestRuns, time.Duration((b-a)*float64(time.Second)))
		hostRuns = append(hostRuns, hostRead(t, vda, false))
	}
	if len(guestRuns) != 3 {
		t.Fatalf("%d dd timings on the console, want 3", len(guestRuns))
	}
	g, h := median(guestRuns), median(hostRuns)
	t.Logf("sequential read of %d MiB, median of 3: guest dd %v (%.0f MB/s), host read %v (%.0f MB/s): guest/host time %.1fx; guest runs %v, host runs %v (%s)",
		size>>20, g, float64(size)/1e6/max(g.Seconds(), 0.01), h, float64(size)/1e6/h.Seconds(), g.Seconds()/h.Seconds(),
		guestRuns, hostRuns, kvmtest.Label())
	t.Logf("boot + script + poweroff: %v; cow overlay holds %d blocks; vda notifications by ioeventfd: %d (%s)", time.Since(start), blocks, notifies, kvmtest.Label())
}

// TestKVMVirtioDiskAcrossRestore pauses a guest while a reader loop keeps
// requests in flight on a cow disk and a written file sits unsynced in the
// guest's page cache, saves machine state and RAM, restores them into a
// fresh machine over the same disk and overlay, and checks that the guest
// there finishes its I/O without errors and that the file reaches the
// overlay when it syncs.
func TestKVMVirtioDiskAcrossRestore(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	img := mkfsImage(t, dir, "vda.img", 64<<20)
	overlay := filepath.Join(dir, "vda.overlay")
	cfg := guestConfig(t)
	cfg.Disks = []DiskConfig{{Name: "vda", Path: img, Mode: disk.ModeCOW, OverlayPath: overlay}}

	src := newGuest(t, cfg)
	src.start(t)
	stopOnCleanup(t, src)
	src.waitConsole(t, guest.ReadyMarker, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	src.typeLine(t, "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo written-before-snapshot > /mnt/a.txt && echo VT:mounted-$((1+1))")
	src.waitConsole(t, "VT:mounted-2", time.Minute)
	src.typeLine(t, "(while :; do dd if=/dev/vda of=/dev/null bs=64k count=256 2>/dev/null; echo 1 > /proc/sys/vm/drop_caches; done) & echo VT:loop-$((2+2))")
	src.waitConsole(t, "VT:loop-4", time.Minute)
	time.Sleep(time.Second) // let the loop get requests in flight

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.m.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := src.m.SaveState()
	if err != nil {
		t.Fatal(err)
	}
	var ram [][]byte
	for _, r := range src.m.RAM() {
		ram = append(ram, append([]byte(nil), r.Data...))
	}
	qs := st.Virtio[0].Transport.Queues[0]
	src.m.Stop()
	if err := src.wait(t); err != nil {
		t.Fatalf("source Run after Stop: %v", err)
	}
	if err := src.m.Close(); err != nil { // flushes the overlay's map
		t.Fatal(err)
	}

	dst := newGuest(t, cfg)
	for i, r := range dst.m.RAM() {
		copy(r.Data, ram[i])
	}
	if err := dst.m.RestoreState(st); err != nil {
		t.Fatal(err)
	}
	dst.start(t)
	stopOnCleanup(t, dst)
	dst.typeLine(t, "sleep 2; kill %1; wait; sync; cat /mnt/a.txt; umount /mnt && echo VT:umounted-$((3+3)) errors=$(dmesg | grep -ci 'i/o error') VT:end-$((4+4))")
	dst.waitConsole(t, "VT:end-8", 2*time.Minute)
	out := dst.console.String()
	saveConsole(t, out)
	if !strings.Contains(out, "written-before-snapshot") || !strings.Contains(out, "errors=0") {
		t.Fatalf("restored guest:\n%s", tail(out))
	}
	dst.typeLine(t, "poweroff -f")
	if err := dst.wait(t); err != nil {
		t.Fatalf("restored Run: %v", err)
	}
	if err := dst.m.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := disk.Open(img, disk.ModeCOW, overlay)
	if err != nil {
		t.Fatal(err)
	}
	merged := make([]byte, 64<<20)
	_, err = o.ReadAt(merged, 0)
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	mergedPath := filepath.Join(dir, "merged.img")
	if err := os.WriteFile(mergedPath, merged, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := debugfsCat(t, mergedPath, "/a.txt"); got != "written-before-snapshot\n" {
		t.Fatalf("base + overlay holds %q", got)
	}
	// Chains the driver had made available that the device had not taken
	// yet: the restored device serves them.
	availIdx := binary.LittleEndian.Uint16(ram[0][qs.Avail+2:])
	t.Logf("saved vda queue: driver made %d available, device took %d, returned %d (%s)", availIdx, qs.LastAvail, qs.UsedIdx, kvmtest.Label())
}

// TestKVMVirtioINTx boots with pci=nomsi, so the guest's virtio drivers use
// the legacy INTx line (through the IOAPIC and the ACPI _PRT routing) and the
// ISR: the disk and the entropy device must still answer.
func TestKVMVirtioINTx(t *testing.T) {
	kvmtest.Require(t)
	dir := t.TempDir()
	img := mkfsImage(t, dir, "vda.img", 16<<20)
	script := `
mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && echo "VT:hello=$(cat /mnt/hello.txt)"
echo "VT:rngbytes=$(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
grep virtio /proc/interrupts | sed 's/^/VT:irq /'
`
	cfg := guestConfig(t)
	cfg.Console = newSyncBuffer("")
	cfg.Cmdline += " pci=nomsi " + guest.CmdParam(script)
	cfg.Disks = []DiskConfig{{Name: "vda", Path: img, Mode: disk.ModeRO}}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	err = runMachine(t, m, 4*time.Minute)
	out := cfg.Console.(*syncBuffer).String()
	saveConsole(t, out)
	if err != nil || m.StopReason() != StopPowerOff {
		t.Fatalf("Run: %v, stop %v\n%s", err, m.StopReason(), tail(out))
	}
	if !strings.Contains(out, "VT:hello=hello from the host") {
		t.Errorf("disk not readable over INTx")
	}
	if rb := regexp.MustCompile(`VT:rngbytes=([0-9a-f]{64})`).FindStringSubmatch(out); rb == nil {
		t.Errorf("no hwrng bytes over INTx")
	}
	if !regexp.MustCompile(`VT:irq .*IO-APIC.*virtio`).MatchString(out) || strings.Contains(out, "virtio0-config") {
		t.Errorf("the guest does not use INTx for virtio")
	}
	if t.Failed() {
		t.Fatalf("console:\n%s", tail(out))
	}
}
