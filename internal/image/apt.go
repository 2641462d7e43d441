package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// debianPackageName matches Debian package names (Debian Policy 5.6.1). The
// name is passed to apt as an argument, so anything else, such as a leading
// '-', is refused before it can become an option.
var debianPackageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// maxMetaDepth bounds how many metapackages resolvePackage follows, so a
// loop in the archive's dependencies cannot hang the build.
const maxMetaDepth = 4

// requireTools fails with ErrFailedPrecondition when a host tool the build
// needs is not installed.
func requireTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("%s is required to build the guest image but was not found in PATH: %w", n, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// command prepares a host tool to run under ctx. dpkg-deb and apt-get fork
// helpers (the decompressor, apt's download methods) that inherit the output
// pipes; killing only the tool on cancellation would leave them holding the
// pipes and Wait blocked for ever, so the tool runs in its own process group
// and cancellation kills the group.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	// apt translates its messages; the C locale keeps them readable in logs
	// whatever the caller's environment.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Should a helper escape the group, Wait still returns.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runTool runs a host tool and returns its stdout. Its stderr goes into the
// error, because apt and dpkg explain their failures there.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := command(ctx, name, args...)
	cmd.Dir = dir
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 4096}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &toolError{cmd: name + " " + strings.Join(args, " "), err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// toolError is a failed host command with what it printed.
type toolError struct {
	cmd    string
	err    error
	stderr string
}

func (e *toolError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *toolError) Unwrap() error { return e.err }

// tailBuffer keeps the last max bytes written to it, enough for an error
// message without letting a chatty tool grow memory without bound.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = b.buf[over:]
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return strings.TrimSpace(string(b.buf)) }

// aptNotFound turns apt's failure to find a package into ErrNotFound. apt
// exits with 100 for every error; for these read-only queries of the local
// package lists an unknown package is the failure that happens in practice,
// and the message apt printed stays in the error.
func aptNotFound(pkg string, err error) error {
	var te *toolError
	var ee *exec.ExitError
	if errors.As(err, &te) && errors.As(err, &ee) && ee.ExitCode() == 100 {
		return fmt.Errorf("package %s: %w: %w", pkg, errdefs.ErrNotFound, err)
	}
	return fmt.Errorf("package %s: %w", pkg, err)
}

// resolvePackage follows a kernel metapackage such as linux-image-cloud-amd64
// to the versioned package that holds the kernel, such as
// linux-image-6.1.0-56-cloud-amd64. A package that depends on no other
// linux-image-* package is taken to be the kernel package itself.
func resolvePackage(ctx context.Context, name string) (string, error) {
	// One recursive query costs what one plain query does (loading apt's
	// cache is the expense), and a metapackage needs two levels.
	out, err := runTool(ctx, "", "apt-cache", "depends", "--recurse",
		"--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
		"--no-replaces", "--no-enhances", "--no-pre-depends", name)
	if err != nil {
		return "", aptNotFound(name, err)
	}
	kernelDeps := parseKernelDepends(out)
	pkg := name
	for range maxMetaDepth {
		next := kernelDeps[pkg]
		switch len(next) {
		case 0:
			return pkg, nil
		case 1:
			pkg = next[0]
		default:
			return "", fmt.Errorf("package %s depends on several kernel packages (%s); name one of them: %w",
				pkg, strings.Join(next, ", "), errdefs.ErrInvalidArgument)
		}
	}
	return "", fmt.Errorf("package %s: more than %d levels of kernel metapackages: %w", name, maxMetaDepth, errdefs.ErrInvalidArgument)
}

// parseKernelDepends reads the output of apt-cache depends --recurse into
// the linux-image-* packages each package depends on:
//
//	linux-image-cloud-amd64
//	  Depends: linux-image-6.1.0-56-cloud-amd64
//	linux-image-6.1.0-56-cloud-amd64
//	  Depends: kmod
//	 |Depends: initramfs-tools
func parseKernelDepends(out []byte) map[string][]string {
	deps := map[string][]string{}
	var pkg string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		line := s.Text()
		if line != "" && line[0] != ' ' {
			pkg = strings.TrimSpace(line)
			continue
		}
		// "|Depends:" is the first of alternatives; it counts as well.
		dep, ok := strings.CutPrefix(strings.TrimLeft(line, " |"), "Depends: ")
		if ok && pkg != "" && strings.HasPrefix(dep, "linux-image-") && debianPackageName.MatchString(dep) &&
			!slices.Contains(deps[pkg], dep) {
			deps[pkg] = append(deps[pkg], dep)
		}
	}
	return deps
}

// debURI is what apt-get download --print-uris says about a package's file.
type debURI struct {
	File   string
	Size   int64
	SHA256 string
}

// printURI asks apt for the file name, size and checksum of the candidate
// version of pkg without downloading it, so a cached .deb can be checked
// against the archive's checksum rather than trusted.
func printURI(ctx context.Context, pkg string) (debURI, error) {
	out, err := runTool(ctx, "", "apt-get", "download", "--print-uris", pkg)
	if err != nil {
		return debURI{}, aptNotFound(pkg, err)
	}
	// 'http://.../NAME_VERSION_ARCH.deb' NAME_VERSION_ARCH.deb SIZE SHA256:HEX
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "'") {
			continue
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		sum, ok := strings.CutPrefix(f[3], "SHA256:")
		if err != nil || !ok || len(sum) != sha256.Size*2 ||
			f[1] != filepath.Base(f[1]) || !strings.HasSuffix(f[1], ".deb") {
			return debURI{}, fmt.Errorf("package %s: unexpected apt-get --print-uris output %q: %w", pkg, line, errdefs.ErrUnknown)
		}
		return debURI{File: f[1], Size: size, SHA256: strings.ToLower(sum)}, nil
	}
	return debURI{}, fmt.Errorf("package %s: apt-get --print-uris printed no file: %w", pkg, errdefs.ErrNotFound)
}

// fetchDeb returns the path of the package's .deb in cacheDir, downloading it
// only when the cache lacks a copy that matches the archive's checksum.
// It reports whether the cached copy was used.
func fetchDeb(ctx context.Context, cacheDir, pkg string) (path string, cached bool, err error) {
	uri, err := printURI(ctx, pkg)
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", false, fmt.Errorf("cache directory: %w", err)
	}
	path = filepath.Join(cacheDir, uri.File)
	if err := checkFile(path, uri.Size, uri.SHA256); err == nil {
		return path, true, nil
	}
	// Download into a private directory and rename, so that an interrupted
	// download never sits in the cache under the final name.
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", false, fmt.Errorf("cache directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := runTool(ctx, tmp, "apt-get", "download", pkg); err != nil {
		return "", false, fmt.Errorf("downloading %s: %w", pkg, err)
	}
	got := filepath.Join(tmp, uri.File)
	if err := checkFile(got, uri.Size, uri.SHA256); err != nil {
		return "", false, fmt.Errorf("downloaded %s: %w", pkg, err)
	}
	if err := os.Rename(got, path); err != nil {
		return "", false, fmt.Errorf("cache directory: %w", err)
	}
	return path, false, nil
}

// checkFile reports whether the file at path has the given size and sha256.
func checkFile(path string, size int64, sum string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %w", path, errdefs.ErrNotFound)
		}
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("%s: size %d, want %d: %w", path, fi.Size(), size, errdefs.ErrDataLoss)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("%s: sha256 %s, want %s: %w", path, got, sum, errdefs.ErrDataLoss)
	}
	return nil
}

// debControl is the part of a package's control file the image records.
type debControl struct {
	Package      string
	Version      string
	Architecture string
}

// readControl reads the control fields of a .deb. It is also the check that
// dpkg-deb can read the file at all.
func readControl(ctx context.Context, deb string) (debControl, error) {
	out, err := runTool(ctx, "", "dpkg-deb", "--field", deb, "Package", "Version", "Architecture")
	if err != nil {
		return debControl{}, fmt.Errorf("%s is not a readable Debian package: %w: %w", deb, err, errdefs.ErrInvalidArgument)
	}
	var c debControl
	for line := range strings.SplitSeq(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			c.Package = v
		case "Version":
			c.Version = v
		case "Architecture":
			c.Architecture = v
		}
	}
	if c.Package == "" || c.Version == "" {
		return debControl{}, fmt.Errorf("%s: control file lacks Package or Version: %w", deb, errdefs.ErrInvalidArgument)
	}
	return c, nil
}
