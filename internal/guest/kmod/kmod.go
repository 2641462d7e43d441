// Package kmod loads the kernel modules the guest image ships, in the order
// the image builder wrote down, without modprobe, depmod or a modules.dep:
// the image knows its modules and their order at build time, so the agent
// does not need to resolve dependencies at boot.
//
// Like modprobe, it passes each module the `module.param=value` words of the
// kernel command line: the kernel applies those only to built-in drivers,
// and the microvm machine describes its virtio-mmio devices that way.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/cmdline"
)

// ListPath is where the guest image lists its modules, one per line in load
// order: `<name> <absolute path to the .ko>`. Blank lines and lines whose
// first non-blank character is '#' are skipped.
const ListPath = "/etc/hull/modules.load"

// Module is one line of the list.
type Module struct {
	// Name is the module's name as the kernel knows it (virtio_mmio); it
	// selects the command-line parameters the module gets.
	Name string
	// Path is the absolute path of the uncompressed .ko file.
	Path string
}

// ReadList reads and parses the module list at path.
func ReadList(path string) ([]Module, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mods, err := ParseList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return mods, nil
}

// ParseList parses a module list. A malformed line fails the whole list:
// the list is written by the image builder, so a bad line is a build bug
// and loading a guessed subset would hide it.
func ParseList(r io.Reader) ([]Module, error) {
	var mods []Module
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want `<name> <path>`, got %q", n, line)
		}
		name, path := fields[0], fields[1]
		if strings.ContainsAny(name, "/.=") {
			return nil, fmt.Errorf("line %d: bad module name %q", n, name)
		}
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("line %d: module path %q is not absolute", n, path)
		}
		mods = append(mods, Module{Name: name, Path: path})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return mods, nil
}

// Params returns the parameter string finit_module should get for module:
// every `module.param[=value]` of the command line whose module part names
// it (dashes and underscores alike), in command-line order, joined by
// spaces. A parameter given several times is passed several times, as
// virtio_mmio.device is: the module's setter sees each one.
func Params(module string, params []cmdline.Param) string {
	want := cmdline.Normalize(module)
	var words []string
	for _, p := range params {
		mod, name, ok := strings.Cut(p.Key, ".")
		if !ok || name == "" || cmdline.Normalize(mod) != want {
			continue
		}
		words = append(words, cmdline.Param{Key: name, Value: p.Value, HasValue: p.HasValue}.String())
	}
	return strings.Join(words, " ")
}

// Result is the outcome of loading one module.
type Result struct {
	Module
	// Params is what the module was given.
	Params string
	// AlreadyLoaded is set when the kernel had the module already; that is
	// not an error.
	AlreadyLoaded bool
	// Took is how long the kernel spent on it (mostly the module's init).
	Took time.Duration
	// Err is why the module is not loaded, nil when it is.
	Err error
}

// finitModule is unix.FinitModule; tests replace it so that they never load
// anything into the test machine's kernel.
var finitModule = unix.FinitModule

// Load loads mods in order and reports on each. A module that fails does
// not stop the others: whether a missing module is fatal is the caller's
// call (virtio_console is, overlay is not), and modules that depend on a
// failed one fail on their own with the kernel's "unknown symbol" error.
//
// Loading is sequential: a module's dependencies are loaded before it, and
// most of the time goes into the modules' init functions, which the kernel
// runs synchronously anyway.
func Load(mods []Module, params []cmdline.Param) []Result {
	results := make([]Result, 0, len(mods))
	for _, m := range mods {
		r := Result{Module: m, Params: Params(m.Name, params)}
		start := time.Now()
		r.AlreadyLoaded, r.Err = load(m.Path, r.Params)
		r.Took = time.Since(start)
		if r.Err != nil {
			r.Err = fmt.Errorf("load module %s from %s: %w", m.Name, m.Path, r.Err)
		}
		results = append(results, r)
	}
	return results
}

func load(path, params string) (already bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	for {
		err = finitModule(fd, params, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return true, nil
	}
	if err != nil {
		return false, os.NewSyscallError("finit_module", err)
	}
	return false, nil
}

// Loaded returns the names of the modules that are in the kernel after Load,
// in load order.
func Loaded(results []Result) []string {
	var names []string
	for _, r := range results {
		if r.Err == nil {
			names = append(names, r.Name)
		}
	}
	return names
}

// Errors returns the errors of the modules that failed, joined; nil when
// none did.
func Errors(results []Result) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}
