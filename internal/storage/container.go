package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// Container is the part of the shared directory that holds one
// container's rootfs and bind mount sources, mounted on the host.
type Container struct {
	shared string // the sandbox's shared directory (host path)
	id     string
	// mounted lists the host mount points made, in order, for teardown.
	mounted []string
}

// PrepareContainer mounts the container's rootfs and the sources of its
// bind mounts under shared/<id>, read-only on the host where the spec says
// so (a guest's root cannot undo a host-side read-only mount), and returns
// a copy of the spec with those paths as the guest sees them. On error
// nothing stays mounted.
func PrepareContainer(shared, id, bundle string, spec *specs.Spec) (_ *Container, _ *specs.Spec, retErr error) {
	if spec.Root == nil || spec.Root.Path == "" {
		return nil, nil, fmt.Errorf("spec has no root.path: %w", errdefs.ErrInvalidArgument)
	}
	rootfs, err := ResolveInBundle(bundle, spec.Root.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("root.path: %w", err)
	}
	c := &Container{shared: shared, id: id}
	defer func() {
		if retErr != nil {
			c.Cleanup()
		}
	}()
	dir := filepath.Join(shared, id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("container directory: %w", err)
	}
	guest := *spec
	guestRoot := *spec.Root
	guest.Root = &guestRoot
	guestDir := filepath.Join(agent.SharedMountPoint, id)

	if err := c.bind(rootfs, "rootfs", true, spec.Root.Readonly); err != nil {
		return nil, nil, fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	guest.Root.Path = filepath.Join(guestDir, "rootfs")

	guest.Mounts = slices.Clone(spec.Mounts)
	for i, m := range guest.Mounts {
		if !isBind(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		name := "mount-" + strconv.Itoa(i)
		ro := slices.Contains(m.Options, "ro")
		recursive := slices.Contains(m.Options, "rbind")
		if err := c.bind(src, name, recursive, ro); err != nil {
			return nil, nil, fmt.Errorf("mount %d (%s on %s): %w", i, m.Source, m.Destination, err)
		}
		guest.Mounts[i].Source = filepath.Join(guestDir, name)
	}
	return c, &guest, nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// ResolveInBundle resolves a path of the spec: a relative one must stay in
// the bundle after symlinks are followed, so that a bundle cannot point the
// runtime at the host's files by a link.
func ResolveInBundle(bundle, p string) (string, error) {
	if filepath.IsAbs(p) {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return "", fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		return real, nil
	}
	realBundle, err := filepath.EvalSymlinks(bundle)
	if err != nil {
		return "", fmt.Errorf("bundle: %w: %w", err, errdefs.ErrNotFound)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(realBundle, p))
	if err != nil {
		return "", fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	if real != realBundle && !strings.HasPrefix(real, realBundle+"/") {
		return "", fmt.Errorf("%s resolves to %s, outside the bundle: %w", p, real, errdefs.ErrInvalidArgument)
	}
	return real, nil
}

// bind mounts src at shared/<id>/<name>, private, and read-only if ro.
func (c *Container) bind(src, name string, recursive, ro bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("source: %w: %w", err, errdefs.ErrNotFound)
	}
	target := filepath.Join(c.shared, c.id, name)
	if st.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, target, "", flags, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("bind %s: %w", target, err)
	}
	c.mounted = append(c.mounted, target)
	// Nothing mounted later on either side propagates to the other.
	if err := unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s private: %w", target, err)
	}
	if ro {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", target, err)
		}
	}
	return nil
}

// Cleanup unmounts what PrepareContainer mounted and removes the
// container's directory. The guest can write in the shared directory, so
// every path is opened without following links: a link planted by the
// guest cannot turn an unmount or a removal towards the host's files.
func (c *Container) Cleanup() error {
	dirFd, err := unix.Open(filepath.Join(c.shared, c.id), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container directory: %w", err)
	}
	defer unix.Close(dirFd)
	var errs []error
	for i := len(c.mounted) - 1; i >= 0; i-- {
		name := filepath.Base(c.mounted[i])
		// The path through the pinned directory fd cannot be redirected.
		p := fmt.Sprintf("/proc/self/fd/%d/%s", dirFd, name)
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", c.mounted[i], err))
			continue
		}
		if err := unix.Unlinkat(dirFd, name, unix.AT_REMOVEDIR); errors.Is(err, unix.ENOTDIR) {
			err = unix.Unlinkat(dirFd, name, 0)
		}
	}
	c.mounted = nil
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Remove(filepath.Join(c.shared, c.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container directory: %w", err)
	}
	return nil
}
