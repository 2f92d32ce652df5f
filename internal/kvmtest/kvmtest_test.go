package kvmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeHost(t *testing.T, modules []string, device bool) {
	t.Helper()
	root := t.TempDir()
	for _, m := range modules {
		if err := os.MkdirAll(filepath.Join(root, "module", m), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dev := filepath.Join(root, "kvm")
	if device {
		if err := os.WriteFile(dev, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldMod, oldDev := sysModuleDir, devicePath
	sysModuleDir, devicePath = filepath.Join(root, "module"), dev
	t.Cleanup(func() { sysModuleDir, devicePath = oldMod, oldDev })
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		modules []string
		device  bool
		wantErr string // "" means usable
	}{
		{"no modules", nil, true, "no hardware KVM"},
		{"kvm only", []string{"kvm"}, true, "no hardware KVM"},
		{"pvm", []string{"kvm", "kvm_pvm"}, true, "kvm_pvm is loaded"},
		{"amd without device", []string{"kvm", "kvm_amd"}, false, "kvm_amd is loaded but"},
		{"intel without device", []string{"kvm", "kvm_intel"}, false, "kvm_intel is loaded but"},
		{"amd", []string{"kvm", "kvm_amd"}, true, ""},
		{"intel", []string{"kvm", "kvm_intel"}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fakeHost(t, tt.modules, tt.device)
			err := Check()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Check() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// fakeTB records what Require asks of a test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestRequire(t *testing.T) {
	tests := []struct {
		name              string
		lab               string
		modules           []string
		wantSkip, wantErr bool
	}{
		{"no kvm outside lab skips", "", []string{"kvm_pvm"}, true, false},
		{"no kvm in lab fails", "1", []string{"kvm_pvm"}, false, true},
		{"kvm outside lab runs", "", []string{"kvm_amd"}, false, false},
		{"kvm in lab runs", "1", []string{"kvm_amd"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LabEnv, tt.lab)
			fakeHost(t, tt.modules, true)
			f := &fakeTB{}
			Require(f)
			if (f.skipped != "") != tt.wantSkip || (f.failed != "") != tt.wantErr {
				t.Fatalf("Require: skipped=%q failed=%q, want skip=%v fail=%v", f.skipped, f.failed, tt.wantSkip, tt.wantErr)
			}
			if tt.wantSkip && !strings.Contains(f.skipped, "make test-kvm") {
				t.Errorf("skip message %q does not point at make test-kvm", f.skipped)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	t.Setenv(LabEnv, "1")
	if !InLab() || Label() != "nested TCG" {
		t.Fatalf("with %s=1: InLab=%v Label=%q", LabEnv, InLab(), Label())
	}
	t.Setenv(LabEnv, "")
	if InLab() || Label() != "hardware KVM" {
		t.Fatalf("without %s: InLab=%v Label=%q", LabEnv, InLab(), Label())
	}
}
