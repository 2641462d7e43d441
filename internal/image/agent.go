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
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("agent binary %s: missing: %w", path, errdefs.ErrNotFound)
		}
		return 0, fmt.Errorf("agent binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("agent binary %s: not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	f, err := elf.Open(path)
	if err != nil {
		return 0, fmt.Errorf("agent binary %s: not an ELF file: %w: %w", path, errdefs.ErrInvalidArgument, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return 0, fmt.Errorf("agent binary %s: ELF type %v is not an executable: %w", path, f.Type, errdefs.ErrInvalidArgument)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return 0, fmt.Errorf("agent binary %s: dynamically linked (has an ELF interpreter); build it static, e.g. CGO_ENABLED=0: %w", path, errdefs.ErrInvalidArgument)
		}
	}
	// A static-pie executable is ET_DYN without an interpreter; so is a shared
	// library, which only the libraries it needs tell apart.
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return 0, fmt.Errorf("agent binary %s: needs shared libraries %v: %w", path, libs, errdefs.ErrInvalidArgument)
	}
	if want, ok := debArchMachine[arch]; ok && f.Machine != want {
		return 0, fmt.Errorf("agent binary %s: built for %v, the kernel is %s: %w", path, f.Machine, arch, errdefs.ErrInvalidArgument)
	}
	return fi.Size(), nil
}
