package initramfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAddBusybox(t *testing.T) {
	if _, err := os.Stat(DefaultBusybox); err != nil {
		t.Fatalf("%s missing: install busybox-static (make deps)", DefaultBusybox)
	}
	var a Archive
	if err := a.AddBusybox(""); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, _ := readArchive(t, buf.Bytes())
	bb, _ := os.ReadFile(DefaultBusybox)
	if got["bin/busybox"].data != string(bb) {
		t.Error("bin/busybox differs from the host binary")
	}
	for _, applet := range []string{"bin/sh", "sbin/insmod", "bin/mount", "sbin/poweroff", "usr/bin/setsid", "bin/cttyhack", "bin/base64"} {
		if m := got[applet]; m.target != "/bin/busybox" {
			t.Errorf("%s: %+v, want a symlink to /bin/busybox", applet, m)
		}
	}
}

func TestAddBusyboxRefuses(t *testing.T) {
	text := filepath.Join(t.TempDir(), "busybox")
	os.WriteFile(text, []byte("#!/bin/sh\n"), 0o755)
	tests := []struct {
		name, path string
		want       error
	}{
		{"missing", "/nonexistent/busybox", ErrNotFound},
		{"not ELF", text, ErrInvalid},
	}
	// A dynamically linked binary: the Go toolchain's own test binary is
	// static, so look for a common dynamic one.
	for _, dyn := range []string{"/bin/ls", "/usr/bin/ls", "/bin/bash"} {
		if _, err := os.Stat(dyn); err == nil {
			tests = append(tests, struct {
				name, path string
				want       error
			}{"dynamic", dyn, ErrInvalid})
			break
		}
	}
	for _, tt := range tests {
		var a Archive
		if err := a.AddBusybox(tt.path); !errors.Is(err, tt.want) {
			t.Errorf("%s: AddBusybox(%s) = %v, want %v", tt.name, tt.path, err, tt.want)
		}
	}
}
