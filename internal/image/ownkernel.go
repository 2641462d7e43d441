package image

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/containerd/errdefs"
)

// OwnKernelPackage stands in the manifest's KernelPackage for a kernel hull
// built itself from kernel/hull-guest.config (scripts/build-kernel.sh).
const OwnKernelPackage = "hull-guest-kernel"

// elfMachineArch is the Debian architecture of a kernel ELF's machine, for
// the agent's architecture check.
var elfMachineArch = map[elf.Machine]string{}

func init() {
	for arch, m := range debArchMachine {
		elfMachineArch[m] = arch
	}
}

// releasePattern finds the release in the kernel's banner
// ("Linux version 6.1.192-hull (builder@host) ..."); releases are short and
// made of these characters.
var releasePattern = regexp.MustCompile(`Linux version ([0-9][0-9A-Za-z.+_-]{0,63}) \(`)

// ownKernel is a kernel hull built itself, read and checked.
type ownKernel struct {
	vmlinux []byte // ELF with a PVH entry
	release string
	arch    string // Debian architecture name
}

// readOwnKernel reads a kernel built from hull's config: the bzImage `make`
// leaves in arch/x86/boot, or the ELF vmlinux. Either way the image gets the
// ELF, booted through its PVH entry like the one taken from Debian's package.
func readOwnKernel(path string) (*ownKernel, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("kernel %s: missing (scripts/build-kernel.sh builds it): %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxVmlinux+1))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", path, err)
	}
	if len(raw) > maxVmlinux {
		return nil, fmt.Errorf("kernel %s: larger than %d bytes: %w", path, maxVmlinux, errdefs.ErrInvalidArgument)
	}
	vmlinux := raw
	if !bytes.HasPrefix(raw, []byte(elf.ELFMAG)) {
		if vmlinux, err = extractVmlinux(raw); err != nil {
			return nil, fmt.Errorf("kernel %s: neither an ELF kernel nor a usable bzImage: %w: %w", path, errdefs.ErrInvalidArgument, err)
		}
	} else if err := checkPVH(raw); err != nil {
		return nil, fmt.Errorf("kernel %s: %w: %w", path, errdefs.ErrInvalidArgument, err)
	}
	ef, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w: %w", path, errdefs.ErrInvalidArgument, err)
	}
	arch, ok := elfMachineArch[ef.Machine]
	if !ok {
		return nil, fmt.Errorf("kernel %s: machine %v is not one hull builds for: %w", path, ef.Machine, errdefs.ErrInvalidArgument)
	}
	m := releasePattern.FindSubmatch(vmlinux)
	if m == nil {
		return nil, fmt.Errorf("kernel %s: no \"Linux version\" banner to take the release from: %w", path, errdefs.ErrInvalidArgument)
	}
	return &ownKernel{vmlinux: vmlinux, release: string(m[1]), arch: arch}, nil
}

// buildOwnKernel builds the image around opts.KernelPath. Its drivers are
// built in, so the initramfs holds the agent and no modules.
func (b *builder) buildOwnKernel(ctx context.Context) (*Manifest, error) {
	opts := b.opts
	if len(opts.Modules) > 0 {
		return nil, fmt.Errorf("modules %v: a kernel built from hull's config has its drivers built in and loads no modules: %w",
			opts.Modules, errdefs.ErrInvalidArgument)
	}
	if _, err := checkAgent(opts.AgentPath, ""); err != nil {
		return nil, err
	}
	b.logf("reading kernel %s ...", opts.KernelPath)
	k, err := readOwnKernel(opts.KernelPath)
	if err != nil {
		return nil, err
	}
	agentSize, err := checkAgent(opts.AgentPath, k.arch)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, outDirError(opts.OutDir, err)
	}
	unlock, err := lockOutDir(opts.OutDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.logf("kernel %s (%s): drivers built in, no modules", k.release, k.arch)

	b.logf("writing %s ...", InitrdFile)
	initSize, err := checkInit(opts.InitPath, k.arch)
	if err != nil {
		return nil, err
	}
	initrd, err := b.writeInitrd(&initramfsSpec{Release: k.release, AgentPath: opts.AgentPath, AgentSize: agentSize, InitPath: opts.InitPath, InitSize: initSize})
	if err != nil {
		return nil, err
	}
	defer initrd.abort()

	b.logf("writing %s ...", KernelELFFile)
	kf, err := createAtomic(opts.OutDir, KernelELFFile)
	if err != nil {
		return nil, err
	}
	defer kf.abort()
	h := newHashCounter()
	if _, err := io.MultiWriter(kf, h).Write(k.vmlinux); err != nil {
		return nil, fmt.Errorf("writing %s: %w", kf.Name(), err)
	}

	m := &Manifest{
		SchemaVersion:        SchemaVersion,
		KernelPackage:        OwnKernelPackage,
		KernelPackageVersion: k.release,
		KernelRelease:        k.release,
		AgentVersion:         opts.AgentVersion,
		Artifacts: map[string]Artifact{
			ArtifactKernel: {File: KernelELFFile, SHA256: h.sum(), Size: h.n},
			ArtifactInitrd: initrd.artifact,
		},
		Modules: []string{},
	}
	if err := b.commit(m, kf, initrd.atomicFile); err != nil {
		return nil, err
	}
	return m, nil
}
