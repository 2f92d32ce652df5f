package initramfs

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"time"
)

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// AddBusybox adds a statically linked busybox from hostPath ("" means
// DefaultBusybox) as /bin/busybox and a symlink to it for each applet it was
// built with (bin/sh, sbin/insmod, ...). A dynamically linked busybox is
// refused: the initramfs has no C library.
func (a *Archive) AddBusybox(hostPath string) error {
	if hostPath == "" {
		hostPath = DefaultBusybox
	}
	if err := checkStatic(hostPath); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, hostPath, "--list-full")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("initramfs: %s --list-full: %v: %s", hostPath, err, strings.TrimSpace(stderr.String()))
	}
	if err := a.AddHostFile("bin/busybox", hostPath, 0o755); err != nil {
		return err
	}
	n := 0
	for _, applet := range strings.Fields(string(out)) {
		if path.Base(applet) == "busybox" {
			continue
		}
		if err := a.AddSymlink(applet, "/bin/busybox"); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("initramfs: %w: %s --list-full named no applets", ErrInvalid, hostPath)
	}
	return nil
}

// checkStatic refuses a missing, non-ELF or dynamically linked binary.
func checkStatic(file string) error {
	const hint = "install busybox-static, or run make deps"
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("initramfs: %w: busybox at %s (%s)", ErrNotFound, file, hint)
	}
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("initramfs: %w: %s is not an ELF binary: %v", ErrInvalid, file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("initramfs: %w: %s is dynamically linked; the initramfs needs a static busybox (%s)", ErrInvalid, file, hint)
		}
	}
	return nil
}
