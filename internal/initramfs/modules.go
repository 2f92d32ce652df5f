package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Modules is the module tree of one kernel version: /lib/modules/KVER.
type Modules struct {
	Dir     string              // e.g. /lib/modules/6.1.0-56-cloud-amd64
	deps    map[string][]string // module file (relative) -> its dependencies, as modules.dep lists them
	byName  map[string]string   // normalized module name -> module file
	builtin map[string]bool     // normalized names from modules.builtin
}

// ModuleName turns a module file or name (kernel/fs/fuse/fuse.ko.zst,
// kvm-amd) into the kernel's module name (fuse, kvm_amd).
func ModuleName(file string) string {
	n := strings.TrimSuffix(trimCompression(path.Base(file)), ".ko")
	return strings.ReplaceAll(n, "-", "_")
}

func trimCompression(file string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		file = strings.TrimSuffix(file, ext)
	}
	return file
}

// ParseModulesDep parses depmod's modules.dep: one "file: dep dep..." line per
// module, paths relative to the module tree. source names the input in errors.
func ParseModulesDep(r io.Reader, source string) (map[string][]string, error) {
	deps := make(map[string][]string)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("initramfs: %s line %d: %w: no ':' in %q", source, line, ErrInvalid, text)
		}
		mod = strings.TrimSpace(mod)
		files := append([]string{mod}, strings.Fields(rest)...)
		for _, f := range files {
			if err := checkModulePath(f); err != nil {
				return nil, fmt.Errorf("initramfs: %s line %d: %w", source, line, err)
			}
		}
		if _, dup := deps[mod]; dup {
			return nil, fmt.Errorf("initramfs: %s line %d: %w: %s listed twice", source, line, ErrInvalid, mod)
		}
		deps[mod] = files[1:]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("initramfs: %s line %d: %w", source, line+1, err)
	}
	return deps, nil
}

func checkModulePath(f string) error {
	if f == "" || path.IsAbs(f) || path.Clean(f) != f || f == ".." || strings.HasPrefix(f, "../") {
		return fmt.Errorf("%w module path %q (want a clean path relative to the module tree)", ErrInvalid, f)
	}
	if ModuleName(f) == "" || !strings.Contains(path.Base(f), ".ko") {
		return fmt.Errorf("%w module path %q (not a .ko file)", ErrInvalid, f)
	}
	return nil
}

// LoadModules reads dir/modules.dep and, when present, dir/modules.builtin.
func LoadModules(dir string) (*Modules, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("initramfs: %w: %s/modules.dep (is the kernel's image package installed?)", ErrNotFound, dir)
		}
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	deps, err := ParseModulesDep(f, filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	m := &Modules{Dir: dir, deps: deps, byName: make(map[string]string), builtin: make(map[string]bool)}
	for file := range deps {
		m.byName[ModuleName(file)] = file
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			m.builtin[ModuleName(l)] = true
		}
	}
	return m, nil
}

// Resolve returns the module files (relative to Dir) to load for names, in
// load order: every module after all of its dependencies, each once. Names
// built into the kernel are returned in builtin instead. A name that is
// neither is an ErrNotFound error.
func (m *Modules) Resolve(names ...string) (files, builtin []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := make(map[string]int)
	var visit func(file, from string) error
	visit = func(file, from string) error {
		switch state[file] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("initramfs: %w: dependency cycle through %s in %s/modules.dep", ErrInvalid, file, m.Dir)
		}
		deps, ok := m.deps[file]
		if !ok {
			return fmt.Errorf("initramfs: %w: %s (needed by %s) has no line in %s/modules.dep", ErrNotFound, file, from, m.Dir)
		}
		state[file] = visiting
		// modules.dep lists a module's whole dependency closure, most
		// dependent first; walk it backwards so leaves come first.
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], file); err != nil {
				return err
			}
		}
		state[file] = done
		files = append(files, file)
		return nil
	}
	for _, n := range names {
		name := ModuleName(n)
		file, ok := m.byName[name]
		if !ok {
			if m.builtin[name] {
				builtin = append(builtin, name)
				continue
			}
			return nil, nil, fmt.Errorf("initramfs: %w: module %q is neither in %s/modules.dep nor built in", ErrNotFound, n, m.Dir)
		}
		if err := visit(file, n); err != nil {
			return nil, nil, err
		}
	}
	return files, builtin, nil
}

// AddModules resolves names (see Resolve) and adds the module files under
// lib/modules/KVER/, decompressed and named .ko. It returns their absolute
// paths inside the archive in load order, for the init script to insmod.
func (a *Archive) AddModules(m *Modules, names ...string) (loadOrder, builtin []string, err error) {
	files, builtin, err := m.Resolve(names...)
	if err != nil {
		return nil, nil, err
	}
	base := path.Join("lib/modules", filepath.Base(m.Dir))
	for _, f := range files {
		data, err := readModule(filepath.Join(m.Dir, f))
		if err != nil {
			return nil, nil, err
		}
		dst := path.Join(base, trimCompression(f)) // kvm-amd.ko.zst -> kvm-amd.ko
		if err := a.AddFile(dst, 0o644, data); err != nil {
			return nil, nil, err
		}
		loadOrder = append(loadOrder, "/"+dst)
	}
	return loadOrder, builtin, nil
}

// readModule reads a module file, decompressing .gz, .zst and .xz.
func readModule(file string) ([]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("initramfs: %w: module file %s", ErrNotFound, file)
		}
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	var out []byte
	switch {
	case strings.HasSuffix(file, ".ko"):
		out = raw
	case strings.HasSuffix(file, ".ko.gz"):
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			out, err = io.ReadAll(zr)
		}
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w: decompressing %s: %v", ErrInvalid, file, err)
		}
	case strings.HasSuffix(file, ".ko.zst"):
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		defer zr.Close()
		if out, err = zr.DecodeAll(raw, nil); err != nil {
			return nil, fmt.Errorf("initramfs: %w: decompressing %s: %v", ErrInvalid, file, err)
		}
	case strings.HasSuffix(file, ".ko.xz"):
		// No xz decoder among the project's modules: use xz(1).
		xz, err := exec.LookPath("xz")
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w: xz, needed to decompress %s (apt-get install xz-utils)", ErrNotFound, file)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(xz, "-dc", file)
		cmd.Stderr = &stderr
		if out, err = cmd.Output(); err != nil {
			return nil, fmt.Errorf("initramfs: %w: decompressing %s: %v: %s", ErrInvalid, file, err, strings.TrimSpace(stderr.String()))
		}
	default:
		return nil, fmt.Errorf("initramfs: %w: %s is not a .ko, .ko.gz, .ko.zst or .ko.xz file", ErrInvalid, file)
	}
	if !bytes.HasPrefix(out, []byte("\x7fELF")) {
		return nil, fmt.Errorf("initramfs: %w: module %s is not an ELF object", ErrInvalid, file)
	}
	return out, nil
}
