package kvmtest

import (
	"fmt"
	"os"
	"testing"
)

// LabEnv is the environment variable the lab sets to "1" inside its VM.
const LabEnv = "SMOLVM_LAB"

// DevicePath is the KVM device node.
const DevicePath = "/dev/kvm"

// sysModuleDir and devicePath are variables so that tests can point them at a
// fake tree.
var (
	sysModuleDir = "/sys/module"
	devicePath   = DevicePath
)

// InLab reports whether this process runs inside the lab VM (nested KVM on
// QEMU's software emulation). Benchmarks label their figures "nested TCG"
// there: absolute times are 10-50x slower than on real hardware.
func InLab() bool { return os.Getenv(LabEnv) == "1" }

// Label is "nested TCG" inside the lab and "hardware KVM" elsewhere, for
// benchmark and log labels.
func Label() string {
	if InLab() {
		return "nested TCG"
	}
	return "hardware KVM"
}

// Check reports why hardware KVM is not usable here, or nil when it is: a
// vendor module (kvm_intel or kvm_amd) must be loaded and /dev/kvm must open
// for reading and writing.
func Check() error {
	vendor := ""
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if fi, err := os.Stat(sysModuleDir + "/" + m); err == nil && fi.IsDir() {
			vendor = m
			break
		}
	}
	if vendor == "" {
		extra := ""
		if _, err := os.Stat(sysModuleDir + "/kvm_pvm"); err == nil {
			extra = " (kvm_pvm is loaded: a software KVM on which stock kernels fail)"
		}
		return fmt.Errorf("kvmtest: no hardware KVM: neither %s/kvm_intel nor %s/kvm_amd exists%s",
			sysModuleDir, sysModuleDir, extra)
	}
	f, err := os.OpenFile(devicePath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("kvmtest: %s is loaded but %s does not open: %w", vendor, devicePath, err)
	}
	return f.Close()
}

// Require makes t need hardware KVM. Without it the test is skipped, with a
// message saying that `make test` runs it in the lab; inside the lab
// (SMOLVM_LAB=1) a missing or unusable /dev/kvm fails the test instead.
func Require(t testing.TB) {
	t.Helper()
	err := Check()
	if err == nil {
		return
	}
	if InLab() {
		t.Fatalf("%v (inside the lab, where KVM must work)", err)
		return
	}
	t.Skipf("%v; `make test-kvm` (part of `make test`) runs this test inside the KVM lab VM", err)
}
