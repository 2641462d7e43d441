package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// maxModuleSize bounds the memory one .ko may take while it is parsed or
// copied; the largest module of a Debian cloud kernel is a few MiB.
const maxModuleSize = 64 << 20

// modulesRoots are where kernel packages put their modules: /lib before the
// /usr merge (bookworm), /usr/lib after it (trixie).
var modulesRoots = []string{"lib/modules/", "usr/lib/modules/"}

// errStopWalk ends walkDeb early without an error.
var errStopWalk = errors.New("stop walk")

// walkDeb streams the data archive of a .deb through fn, entry by entry,
// without unpacking it: the package holds about 100 MiB of modules and the
// image needs a few of them. Entry names are cleaned of their leading "./".
func walkDeb(ctx context.Context, deb string, fn func(name string, h *tar.Header, r io.Reader) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := command(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w", err)
	}

	var fnErr, tarErr error
	tr := tar.NewReader(bufio.NewReaderSize(out, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tarErr = err
			break
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if err := fn(name, h, tr); err != nil {
			fnErr = err
			break
		}
	}
	if fnErr != nil {
		// Nobody reads the pipe any more; dpkg-deb would block on it.
		cancel()
		_ = cmd.Wait()
		if errors.Is(fnErr, errStopWalk) {
			return nil
		}
		return fnErr
	}
	// Drain what follows the end of the archive (or a corrupt part) so that
	// dpkg-deb can exit and report its own error, which says more than the
	// tar reader's.
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("reading %s: %w", deb, &toolError{cmd: "dpkg-deb --fsys-tarfile", err: err, stderr: stderr.String()})
	}
	if tarErr != nil {
		return fmt.Errorf("reading data archive of %s: %w: %w", deb, errdefs.ErrDataLoss, tarErr)
	}
	return nil
}

// splitModulePath splits a data-archive path such as
// lib/modules/6.1.0-56-cloud-amd64/kernel/fs/fuse/fuse.ko into the release
// and the path below its modules directory.
func splitModulePath(name string) (release, rel string, ok bool) {
	for _, root := range modulesRoots {
		if rest, found := strings.CutPrefix(name, root); found {
			release, rel, ok = strings.Cut(rest, "/")
			return release, rel, ok && release != "" && rel != ""
		}
	}
	return "", "", false
}

// debScan is what one pass over the package finds.
type debScan struct {
	Release      string // kernel release, from boot/vmlinuz-RELEASE
	KernelSize   int64
	KernelSHA256 []byte
	modules      map[string]*moduleIndex // by release
}

// scanDeb copies the kernel into kernelOut and indexes the modules of every
// release in the package, reading each module's .modinfo.
func scanDeb(ctx context.Context, deb string, kernelOut io.Writer) (*debScan, error) {
	s := &debScan{modules: map[string]*moduleIndex{}}
	index := func(release string) *moduleIndex {
		if s.modules[release] == nil {
			s.modules[release] = newModuleIndex()
		}
		return s.modules[release]
	}
	var buf bytes.Buffer
	err := walkDeb(ctx, deb, func(name string, h *tar.Header, r io.Reader) error {
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		if release, ok := strings.CutPrefix(name, "boot/vmlinuz-"); ok && !strings.Contains(release, "/") {
			if s.Release != "" {
				return fmt.Errorf("%s holds two kernels (%s and %s): %w", deb, s.Release, release, errdefs.ErrInvalidArgument)
			}
			hash := sha256.New()
			n, err := io.Copy(io.MultiWriter(kernelOut, hash), r)
			if err != nil {
				return fmt.Errorf("copying kernel: %w", err)
			}
			s.Release, s.KernelSize, s.KernelSHA256 = release, n, hash.Sum(nil)
			return nil
		}
		release, rel, ok := splitModulePath(name)
		if !ok {
			return nil
		}
		switch {
		case rel == "modules.builtin":
			b, err := parseBuiltin(r)
			if err != nil {
				return err
			}
			index(release).builtin = b
		case strings.HasSuffix(rel, ".ko"):
			if h.Size > maxModuleSize {
				return fmt.Errorf("module %s: %d bytes is more than %d: %w", name, h.Size, maxModuleSize, errdefs.ErrInvalidArgument)
			}
			buf.Reset()
			if _, err := io.Copy(&buf, r); err != nil {
				return fmt.Errorf("module %s: %w", name, err)
			}
			m, err := parseModinfo(bytes.NewReader(buf.Bytes()), rel)
			if err != nil {
				return err
			}
			index(release).add(m)
		case strings.HasSuffix(rel, ".ko.xz"), strings.HasSuffix(rel, ".ko.zst"), strings.HasSuffix(rel, ".ko.gz"):
			index(release).compressed[moduleNameFromPath(rel)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.Release == "" {
		return nil, fmt.Errorf("%s holds no kernel (boot/vmlinuz-*): %w", deb, errdefs.ErrNotFound)
	}
	return s, nil
}

// moduleIndex returns the modules of the kernel's release.
func (s *debScan) moduleIndex() *moduleIndex {
	if ix := s.modules[s.Release]; ix != nil {
		return ix
	}
	return newModuleIndex()
}

// readModules returns the contents of the modules at the given paths below
// the kernel's modules directory. It stops reading the package as soon as it
// has them all.
func readModules(ctx context.Context, deb, release string, rels []string) (map[string][]byte, error) {
	data := make(map[string][]byte, len(rels))
	if len(rels) == 0 {
		return data, nil
	}
	err := walkDeb(ctx, deb, func(name string, h *tar.Header, r io.Reader) error {
		rl, rel, ok := splitModulePath(name)
		if !ok || rl != release || h.Typeflag != tar.TypeReg || !slices.Contains(rels, rel) {
			return nil
		}
		if h.Size > maxModuleSize {
			return fmt.Errorf("module %s: %d bytes is more than %d: %w", name, h.Size, maxModuleSize, errdefs.ErrInvalidArgument)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		data[rel] = b
		if len(data) == len(rels) {
			return errStopWalk
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, rel := range rels {
		if _, ok := data[rel]; !ok {
			// The first pass saw it; the file changed between the passes.
			return nil, fmt.Errorf("%s: module %s vanished between two reads: %w", deb, rel, errdefs.ErrDataLoss)
		}
	}
	return data, nil
}
