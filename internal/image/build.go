// Package image builds the guest image a hull VM boots: a kernel, either
// hull's own (built from kernel/hull-guest.config by scripts/build-kernel.sh,
// drivers built in) or Debian's cloud kernel taken from its package (never
// installed into the host's /boot), and a deterministic initramfs holding the
// static hull-agent as /init and only the kernel modules the agent needs
// (none for hull's kernel), with a manifest of versions and checksums that
// the runtime verifies before it starts a VM.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
)

const (
	// DefaultKernelPackage is a metapackage that always depends on the
	// current cloud kernel of the release.
	DefaultKernelPackage = "linux-image-cloud-amd64"
	// DefaultOutDir is where `hull image build` puts the image and where the
	// runtime looks for it.
	DefaultOutDir = "/usr/local/share/hull"
	// DefaultCacheDir keeps the downloaded kernel package between builds.
	DefaultCacheDir = "/var/cache/hull"
)

// DefaultModules are the modules the agent needs on QEMU's microvm and q35
// machines: both virtio transports, the agent channel (virtio-serial or
// vsock), the shared root file system (virtio-fs, overlay), network, block,
// memory balloon and entropy; and the Linux bridge, which containers with
// CAP_NET_ADMIN (privileged pods among them) expect to be able to create,
// as on a host, while the guest has no modprobe to load it on demand.
// Their dependencies are added by Build.
var DefaultModules = []string{
	"virtio_mmio",
	"virtio_pci",
	"virtio_console",
	"vmw_vsock_virtio_transport",
	"virtiofs",
	"overlay",
	"virtio_net",
	"virtio_blk",
	"virtio_balloon",
	"virtio_rng",
	"bridge",
}

// BuildOptions says what Build builds and where it puts it.
type BuildOptions struct {
	// OutDir receives vmlinuz, initramfs.img and manifest.json, each
	// replaced atomically. Created if missing.
	OutDir string
	// CacheDir keeps the downloaded .deb; a cached copy is reused when it
	// matches the archive's checksum. Required unless DebPath is set.
	CacheDir string
	// AgentPath is the static hull-agent binary that becomes /init.
	AgentPath string
	// InitPath is the static hull-init (cmd/hull-init) that sets up
	// containers in the guest; empty leaves it out, and libcontainer sets
	// up every container.
	InitPath string
	// AgentVersion is recorded in the manifest; it may be empty.
	AgentVersion string
	// KernelPackage is the package to take the kernel from, or a
	// metapackage that depends on it. Empty means DefaultKernelPackage.
	KernelPackage string
	// DebPath, if set, is the kernel .deb to use instead of resolving and
	// downloading KernelPackage; apt is then not needed.
	DebPath string
	// KernelPath, if set, is a kernel built from hull's own config
	// (kernel/hull-guest.config, by scripts/build-kernel.sh): a bzImage or
	// an ELF vmlinux with its drivers built in. No package is used and no
	// module goes into the image; Modules must be empty.
	KernelPath string
	// Modules are the modules wanted in the image, '-' and '_' alike; their
	// dependencies are added. Nil means DefaultModules. A wanted module the
	// kernel has built in is skipped.
	Modules []string
	// Progress receives one human-readable line per step; nil discards them.
	Progress io.Writer
}

const buildSteps = 6

// Build builds the guest image described by opts into opts.OutDir and returns
// its manifest. The same package, agent and options give byte-identical
// files. On failure the previous image in OutDir, if any, is left as it was.
//
// Errors wrap errdefs sentinels: ErrInvalidArgument for bad options or an
// unusable agent binary or package, ErrNotFound for a missing file, package
// or module, ErrNotImplemented for a compressed module, ErrFailedPrecondition
// when apt-get or dpkg-deb is not installed, ErrPermissionDenied when OutDir
// is not writable, ErrConflict when another build is writing to OutDir.
func Build(ctx context.Context, opts BuildOptions) (*Manifest, error) {
	b, err := newBuilder(opts)
	if err != nil {
		return nil, err
	}
	return b.build(ctx)
}

type builder struct {
	opts     BuildOptions
	progress io.Writer
	step     int
}

func newBuilder(opts BuildOptions) (*builder, error) {
	if opts.KernelPackage == "" {
		opts.KernelPackage = DefaultKernelPackage
	}
	if opts.Modules == nil && opts.KernelPath == "" {
		opts.Modules = DefaultModules
	}
	b := &builder{opts: opts, progress: opts.Progress}
	if b.progress == nil {
		b.progress = io.Discard
	}
	switch {
	case opts.OutDir == "":
		return nil, fmt.Errorf("no output directory: %w", errdefs.ErrInvalidArgument)
	case opts.AgentPath == "":
		return nil, fmt.Errorf("no agent binary: %w", errdefs.ErrInvalidArgument)
	case opts.KernelPath != "" && opts.DebPath != "":
		return nil, fmt.Errorf("both a kernel file and a kernel package given: %w", errdefs.ErrInvalidArgument)
	case opts.KernelPath == "" && opts.DebPath == "" && opts.CacheDir == "":
		return nil, fmt.Errorf("no cache directory for the kernel package: %w", errdefs.ErrInvalidArgument)
	case opts.KernelPath == "" && opts.DebPath == "" && !debianPackageName.MatchString(opts.KernelPackage):
		return nil, fmt.Errorf("invalid package name %q: %w", opts.KernelPackage, errdefs.ErrInvalidArgument)
	}
	for _, m := range opts.Modules {
		if !validModuleName(normalizeModule(m)) {
			return nil, fmt.Errorf("invalid module name %q: %w", m, errdefs.ErrInvalidArgument)
		}
	}
	return b, nil
}

func (b *builder) logf(format string, args ...any) {
	b.step++
	fmt.Fprintf(b.progress, "[%d/%d] "+format+"\n", append([]any{b.step, buildSteps}, args...)...)
}

func (b *builder) build(ctx context.Context) (*Manifest, error) {
	if b.opts.KernelPath != "" {
		return b.buildOwnKernel(ctx)
	}
	opts := b.opts
	tools := []string{"dpkg-deb"}
	if opts.DebPath == "" {
		tools = []string{"apt-cache", "apt-get", "dpkg-deb"}
	}
	if err := requireTools(tools...); err != nil {
		return nil, err
	}
	// The cheap checks come first so that a wrong agent path or output
	// directory fails before a 25 MiB download.
	if _, err := checkAgent(opts.AgentPath, ""); err != nil {
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
	kernelOut, err := createAtomic(opts.OutDir, KernelFile)
	if err != nil {
		return nil, err
	}
	defer kernelOut.abort()

	deb, err := b.fetch(ctx)
	if err != nil {
		return nil, err
	}
	ctl, err := readControl(ctx, deb)
	if err != nil {
		return nil, err
	}
	agentSize, err := checkAgent(opts.AgentPath, ctl.Architecture)
	if err != nil {
		return nil, err
	}

	b.logf("extracting kernel from %s %s ...", ctl.Package, ctl.Version)
	scan, err := scanDeb(ctx, deb, kernelOut)
	if err != nil {
		return nil, err
	}

	ix := scan.moduleIndex()
	res, err := ix.resolve(opts.Modules)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", scan.Release, err)
	}
	names := make([]string, len(res.Load))
	rels := make([]string, len(res.Load))
	for i, m := range res.Load {
		names[i], rels[i] = m.Name, m.Path
	}
	builtin := ""
	if len(res.Builtin) > 0 {
		builtin = fmt.Sprintf(" (built in, skipped: %v)", res.Builtin)
	}
	b.logf("kernel %s: %d modules to load%s", scan.Release, len(names), builtin)

	b.logf("writing %s (%d modules) ...", InitrdFile, len(names))
	data, err := readModules(ctx, deb, scan.Release, rels)
	if err != nil {
		return nil, err
	}
	initSize, err := checkInit(opts.InitPath, ctl.Architecture)
	if err != nil {
		return nil, err
	}
	initrd, err := b.writeInitrd(&initramfsSpec{
		Release:   scan.Release,
		AgentPath: opts.AgentPath,
		AgentSize: agentSize,
		InitPath:  opts.InitPath,
		InitSize:  initSize,
		Modules:   res.Load,
		Data:      data,
	})
	if err != nil {
		return nil, err
	}
	defer initrd.abort()

	kernel, kernelArt := kernelOut, Artifact{File: KernelFile, SHA256: hex.EncodeToString(scan.KernelSHA256), Size: scan.KernelSize}
	if elfOut, art, err := b.writeVmlinux(kernelOut.Name()); err != nil {
		fmt.Fprintf(b.progress, "      no uncompressed kernel (%v): the image boots the bzImage\n", err)
	} else {
		defer elfOut.abort()
		kernel, kernelArt = elfOut, art
	}

	m := &Manifest{
		SchemaVersion:        SchemaVersion,
		KernelPackage:        ctl.Package,
		KernelPackageVersion: ctl.Version,
		KernelRelease:        scan.Release,
		AgentVersion:         opts.AgentVersion,
		Artifacts: map[string]Artifact{
			ArtifactKernel: kernelArt,
			ArtifactInitrd: initrd.artifact,
		},
		Modules: names,
	}
	if err := b.commit(m, kernel, initrd.atomicFile); err != nil {
		return nil, err
	}
	return m, nil
}

// fetch returns the path of the kernel .deb, resolving and downloading it
// unless the options name one.
func (b *builder) fetch(ctx context.Context) (string, error) {
	opts := b.opts
	if opts.DebPath != "" {
		b.logf("using package file %s", opts.DebPath)
		if _, err := os.Stat(opts.DebPath); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("package file %s: missing: %w", opts.DebPath, errdefs.ErrNotFound)
			}
			return "", fmt.Errorf("package file: %w", err)
		}
		b.logf("nothing to download")
		return opts.DebPath, nil
	}
	b.logf("resolving %s ...", opts.KernelPackage)
	pkg, err := resolvePackage(ctx, opts.KernelPackage)
	if err != nil {
		return "", err
	}
	b.logf("fetching %s into %s ...", pkg, opts.CacheDir)
	deb, cached, err := fetchDeb(ctx, opts.CacheDir, pkg)
	if err != nil {
		return "", err
	}
	if cached {
		fmt.Fprintf(b.progress, "      using cached %s\n", deb)
	}
	return deb, nil
}

// initrdFile is the written, not yet committed initramfs.
type initrdFile struct {
	*atomicFile
	artifact Artifact
}

func (b *builder) writeInitrd(spec *initramfsSpec) (*initrdFile, error) {
	f, err := createAtomic(b.opts.OutDir, InitrdFile)
	if err != nil {
		return nil, err
	}
	h := newHashCounter()
	if err := writeInitramfs(io.MultiWriter(f, h), spec); err != nil {
		f.abort()
		return nil, err
	}
	return &initrdFile{atomicFile: f, artifact: Artifact{File: InitrdFile, SHA256: h.sum(), Size: h.n}}, nil
}

// commit moves the artifacts to their final names, the manifest last: a
// runtime that reads the directory in between sees the old manifest disagree
// with a new file, and Verify refuses the image rather than boot a mix.
func (b *builder) commit(m *Manifest, kernel, initrd *atomicFile) error {
	b.logf("writing %s", ManifestFile)
	data, err := m.marshal()
	if err != nil {
		return err
	}
	mf, err := createAtomic(b.opts.OutDir, ManifestFile)
	if err != nil {
		return err
	}
	defer mf.abort()
	if _, err := mf.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", mf.Name(), err)
	}
	// Read-only for everyone: the image directory is shared by every VM, and
	// nothing but a rebuild (which replaces the files) should change it.
	if err := kernel.commit(0o444); err != nil {
		return err
	}
	if err := initrd.commit(0o444); err != nil {
		return err
	}
	if err := mf.commit(0o444); err != nil {
		return err
	}
	// The kernel of an earlier build in the other format is no longer part
	// of the image.
	for _, name := range []string{KernelFile, KernelELFFile} {
		if name != m.Artifacts[ArtifactKernel].File {
			_ = os.Remove(filepath.Join(b.opts.OutDir, name))
		}
	}
	return syncDir(b.opts.OutDir)
}

// outDirError explains why the output directory cannot take the image.
func outDirError(dir string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("output directory %s is not writable: %w: %w", dir, errdefs.ErrPermissionDenied, err)
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, fs.ErrExist):
		return fmt.Errorf("output directory %s is not a directory: %w: %w", dir, errdefs.ErrInvalidArgument, err)
	}
	return fmt.Errorf("output directory %s: %w", dir, err)
}

// hashCounter is a sha256 that also counts what it hashed.
type hashCounter struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func newHashCounter() *hashCounter { return &hashCounter{h: sha256.New()} }

func (c *hashCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *hashCounter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }
