package guest

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AgentName is the guest agent's file name, in bin/ next to smolvm (make
// build) and as /usr/sbin/smolvm-agent in the initramfs.
const AgentName = "smolvm-agent"

// DefaultAgent finds the guest agent for the default initramfs:
// $SMOLVM_AGENT if set, else smolvm-agent in the directory of the running
// executable (make build puts bin/smolvm and bin/smolvm-agent together).
// It returns "" when there is none, and an error when the file found is
// not a statically linked executable (build it with CGO_ENABLED=0: the
// initramfs has no C library).
func DefaultAgent() (string, error) {
	p := os.Getenv("SMOLVM_AGENT")
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", nil
		}
		p = filepath.Join(filepath.Dir(exe), AgentName)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
	}
	if err := checkStatic(p); err != nil {
		return "", fmt.Errorf("guest: agent: %w", err)
	}
	return p, nil
}

// checkStatic fails unless path is an x86-64 ELF executable with no
// program interpreter and no shared libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || (f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN) {
		return fmt.Errorf("%s: not an x86-64 executable (%v, %v)", path, f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked: build it with CGO_ENABLED=0 (make build)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v: build it with CGO_ENABLED=0", path, libs)
	}
	return nil
}
