package main

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smolvm/smolvm/internal/initramfs"
	"github.com/smolvm/smolvm/internal/kvmtest"
	"github.com/smolvm/smolvm/vmm/guest"
)

// vmgenidProbe lists the devices the vmgenid driver bound, the GED's
// interrupt count, and how often the kernel reseeded for a VM fork.
const vmgenidProbe = `echo "bound $(ls /sys/bus/acpi/drivers/vmgenid/ 2>/dev/null | grep -c SMOL0001)"; ` +
	`echo "ged $(awk 'BEGIN {n=0} /ACPI:Ged/ {for (i=2; i<NF; i++) if ($i ~ /^[0-9]+$/) n+=$i} END {print n}' /proc/interrupts)"; ` +
	`echo "forks $(dmesg | grep -c 'crng reseeded due to virtual machine fork')"`

type vmgenidView struct{ bound, ged, forks int }

func parseVMGenIDProbe(t *testing.T, out string) vmgenidView {
	t.Helper()
	var v vmgenidView
	got := map[string]*int{"bound": &v.bound, "ged": &v.ged, "forks": &v.forks}
	seen := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && got[f[0]] != nil {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("probe line %q", l)
			}
			*got[f[0]] = n
			seen++
		}
	}
	if seen != 3 {
		t.Fatalf("probe printed %q", out)
	}
	return v
}

// TestKVMRunVMGenID: Debian's generic kernel (it has the vmgenid driver;
// the cloud kernel does not) boots with the default initramfs built for
// its modules; its vmgenid driver binds \_SB.VGEN and the Generic Event
// Device requests its interrupt. Each clone restored from a snapshot gets
// a new ID and the interrupt: the GED's count rises and the kernel logs
// "crng reseeded due to virtual machine fork", which the parent never did.
func TestKVMRunVMGenID(t *testing.T) {
	kvmtest.Require(t)
	k, err := initramfs.NewestKernel("/boot", "/lib/modules", "amd64", "linux-image-amd64")
	if err != nil {
		t.Fatal(err)
	}
	agentBin, err := filepath.Abs("../../bin/" + guest.AgentName)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := guest.Initramfs(guest.Options{Kernel: k, Agent: agentBin, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	useBinHelpers(t)
	vm := bootAgentVM(t, "gen", "--kernel", k.Image, "--initrd", initrd, "--cpus", "1", "--mem", "256M")
	root := vm.root
	t.Cleanup(func() { stopBundleDaemons(t, root) })
	t.Setenv("SMOLVM_RUN_DIR", root)
	parent := parseVMGenIDProbe(t, vm.mustExec(t, "sh", "-c", vmgenidProbe))
	if parent.bound != 1 || parent.forks != 0 {
		t.Fatalf("booted %s: vmgenid bound %d devices (want 1), %d fork reseeds (want 0)", filepath.Base(k.Image), parent.bound, parent.forks)
	}

	bundle := filepath.Join(t.TempDir(), "gen.smolmachine")
	snapshotAndStop(t, vm, bundle, 4*time.Minute)
	for _, paging := range []string{"uffd", "eager"} {
		out, errOut, code := smolvmIn(t, root, 4*time.Minute, "run", bundle, "--paging", paging, "--ready-timeout", "150s",
			"--", "sh", "-c", "sleep 1; "+vmgenidProbe)
		if code != 0 {
			t.Fatalf("run --paging %s: exit %d\n%s\n%s", paging, code, out, errOut)
		}
		c := parseVMGenIDProbe(t, out)
		if c.bound != 1 || c.ged <= parent.ged || c.forks != 1 {
			t.Fatalf("clone (%s): vmgenid bound %d, GED interrupts %d (parent %d), fork reseeds %d: want 1, more, 1", paging, c.bound, c.ged, parent.ged, c.forks)
		}
		t.Logf("figure: clone (%s) of the generic kernel: GED interrupts %d -> %d, \"crng reseeded due to virtual machine fork\" logged; %s",
			paging, parent.ged, c.ged, lastLine(errOut))
	}
	if m := regexp.MustCompile(`guest agent ready after ([0-9.]+) s`).FindStringSubmatch(vm.console.String()); m != nil {
		t.Logf("figure: generic kernel boot-to-ready %s s", m[1])
	}
}
