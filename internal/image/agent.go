package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

// debArchMachine maps a package's Architecture to the ELF machine its kernel
// runs, so that an agent built for the wrong architecture fails the build
// instead of the first boot.
var debArchMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"i386":    elf.EM_386,
	"ppc64el": elf.EM_PPC64,
	"riscv64": elf.EM_RISCV,
	"s390x":   elf.EM_S390,
}

// checkAgent checks that path is a statically linked ELF executable, which
// /init must be: the initramfs has no dynamic loader and no libraries. It
// returns the file's size. An empty arch skips the architecture check.
func checkAgent(path, arch string) (int64, error) {
	return checkStatic("agent binary", path, arch)
}

// checkStatic checks that path is a static executable for arch (any when
// empty) and returns its size; what names it in errors.
func checkStatic(what, path, arch string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%s %s: missing: %w", what, path, errdefs.ErrNotFound)
		}
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s %s: not a regular file: %w", what, path, errdefs.ErrInvalidArgument)
	}
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("%s %s: not an ELF file: %w: %w", what, path, errdefs.ErrInvalidArgument, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return 0, fmt.Errorf("%s %s: ELF type %v is not an executable: %w", what, path, f.Type, errdefs.ErrInvalidArgument)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return 0, fmt.Errorf("%s %s: dynamically linked (has an ELF interpreter); build it static, e.g. CGO_ENABLED=0: %w", what, path, errdefs.ErrInvalidArgument)
		}
	}
	// A static-pie executable is ET_DYN without an interpreter; so is a shared
	// library, which only the libraries it needs tell apart.
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return 0, fmt.Errorf("%s %s: needs shared libraries %v: %w", what, path, libs, errdefs.ErrInvalidArgument)
	}
	if want, ok := debArchMachine[arch]; ok && f.Machine != want {
		return 0, fmt.Errorf("%s %s: built for %v, the kernel is %s: %w", what, path, f.Machine, arch, errdefs.ErrInvalidArgument)
	}
	return fi.Size(), nil
}

// GuestInitPath is where hull-init lies in the guest (the agent's
// container.DefaultInitPath).
const GuestInitPath = "/hull-init"

// checkInit checks hull-init like the agent; an empty path is no init.
func checkInit(path, arch string) (int64, error) {
	if path == "" {
		return 0, nil
	}
	return checkStatic("container init (hull-init)", path, arch)
}
