package image

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// module is one loadable kernel module as found in the package.
type module struct {
	Name    string   // normalised module name, e.g. virtio_rng
	Path    string   // relative to /lib/modules/RELEASE, e.g. kernel/drivers/virtio/virtio.ko
	Depends []string // normalised names from .modinfo
}

// normalizeModule maps a module or file name to the kernel's module name:
// the kernel treats '-' and '_' alike and reports '_'.
func normalizeModule(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// moduleNameFromPath gives the module name a .ko file would have without a
// name= entry in its .modinfo.
func moduleNameFromPath(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i > 0 {
		base = base[:i]
	}
	return normalizeModule(base)
}

// validModuleName reports whether name can be a kernel module name. It keeps
// names that would change a path or a modules.load line out of the image.
func validModuleName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// parseModinfo reads the dependencies of a module from its ELF .modinfo
// section. The Debian package ships no modules.dep (depmod writes it at
// install time, and the image never installs the package), so this is the
// only record of what a module needs. softdep= entries are not followed:
// they are optional by definition, and none of the modules the agent needs
// has one.
func parseModinfo(r io.ReaderAt, relPath string) (module, error) {
	m := module{Name: moduleNameFromPath(relPath), Path: relPath}
	f, err := elf.NewFile(r)
	if err != nil {
		return m, fmt.Errorf("module %s: not an ELF object: %w", relPath, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return m, fmt.Errorf("module %s: no .modinfo section: %w", relPath, errdefs.ErrInvalidArgument)
	}
	data, err := sec.Data()
	if err != nil {
		return m, fmt.Errorf("module %s: reading .modinfo: %w", relPath, err)
	}
	for _, field := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(field), "=")
		if !ok {
			continue // NUL padding between entries
		}
		switch key {
		case "name":
			if value != "" {
				m.Name = normalizeModule(value)
			}
		case "depends":
			for d := range strings.SplitSeq(value, ",") {
				if d = strings.TrimSpace(d); d != "" {
					m.Depends = append(m.Depends, normalizeModule(d))
				}
			}
		}
	}
	if !validModuleName(m.Name) {
		return m, fmt.Errorf("module %s: invalid module name %q: %w", relPath, m.Name, errdefs.ErrInvalidArgument)
	}
	for _, d := range m.Depends {
		if !validModuleName(d) {
			return m, fmt.Errorf("module %s: invalid dependency name %q: %w", relPath, d, errdefs.ErrInvalidArgument)
		}
	}
	slices.Sort(m.Depends)
	m.Depends = slices.Compact(m.Depends)
	return m, nil
}

// parseBuiltin reads modules.builtin: one path per built-in module, e.g.
// kernel/drivers/virtio/virtio.ko.
func parseBuiltin(r io.Reader) (map[string]bool, error) {
	builtin := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			builtin[moduleNameFromPath(line)] = true
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.builtin: %w", err)
	}
	return builtin, nil
}

// moduleIndex is everything the package says about the modules of one kernel
// release.
type moduleIndex struct {
	modules    map[string]module
	builtin    map[string]bool
	compressed map[string]string   // module name -> path of a .ko.xz/.ko.zst/.ko.gz
	duplicates map[string][]string // module name -> every path that provides it, when more than one
}

func newModuleIndex() *moduleIndex {
	return &moduleIndex{
		modules:    map[string]module{},
		builtin:    map[string]bool{},
		compressed: map[string]string{},
		duplicates: map[string][]string{},
	}
}

func (ix *moduleIndex) add(m module) {
	if prev, ok := ix.modules[m.Name]; ok {
		if len(ix.duplicates[m.Name]) == 0 {
			ix.duplicates[m.Name] = []string{prev.Path}
		}
		ix.duplicates[m.Name] = append(ix.duplicates[m.Name], m.Path)
		return
	}
	ix.modules[m.Name] = m
}

// resolution is the outcome of resolving the wanted modules.
type resolution struct {
	Load    []module // load order: every module after the modules it depends on
	Builtin []string // wanted modules skipped because the kernel has them built in
}

// resolve returns the wanted modules and everything they depend on, in an
// order in which each can be loaded. The order is a depth-first post-order
// that follows the wanted list as given and visits dependencies sorted by
// name, so the same package and list always give the same order.
func (ix *moduleIndex) resolve(wanted []string) (resolution, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	var (
		res   resolution
		state = map[string]int{}
		stack []string
	)
	var visit func(name, neededBy string) error
	visit = func(name, neededBy string) error {
		if ix.builtin[name] {
			if neededBy == "" && !slices.Contains(res.Builtin, name) {
				res.Builtin = append(res.Builtin, name)
			}
			return nil
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			i := slices.Index(stack, name)
			cycle := append(slices.Clone(stack[i:]), name)
			return fmt.Errorf("module dependency cycle %s: %w", strings.Join(cycle, " -> "), errdefs.ErrInvalidArgument)
		}
		m, ok := ix.modules[name]
		if !ok {
			what := fmt.Sprintf("module %s", name)
			if neededBy != "" {
				what += fmt.Sprintf(" (needed by %s)", neededBy)
			}
			if p, ok := ix.compressed[name]; ok {
				return fmt.Errorf("%s is compressed (%s); compressed modules are not supported: %w", what, p, errdefs.ErrNotImplemented)
			}
			return fmt.Errorf("%s: neither built in nor in the package: %w", what, errdefs.ErrNotFound)
		}
		if paths := ix.duplicates[name]; len(paths) > 0 {
			return fmt.Errorf("module %s is provided by several files (%s): %w", name, strings.Join(paths, ", "), errdefs.ErrInvalidArgument)
		}
		state[name] = visiting
		stack = append(stack, name)
		for _, d := range m.Depends {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
		res.Load = append(res.Load, m)
		return nil
	}
	for _, w := range wanted {
		name := normalizeModule(w)
		if !validModuleName(name) {
			return resolution{}, fmt.Errorf("invalid module name %q: %w", w, errdefs.ErrInvalidArgument)
		}
		if err := visit(name, ""); err != nil {
			return resolution{}, err
		}
	}
	return res, nil
}
