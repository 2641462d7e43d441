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
)

// StackView mounts the container's root, with its bind mounts at their
// destinations, over "/" of the calling process's mount namespace, which
// must be a namespace of its own (the supervisor's).
//
// Tools that act on a container through the pid its runtime reports join
// that pid's mount namespace and take its "/" for the container's: podman
// cp and nsenter -m do so. The pid hull reports is the supervisor's, on
// the host; without this, such a copy would read and write the host's own
// files. setns(2) gives the joiner the mount stacked on the namespace's
// root, while the process that stacked it, and the children it starts
// after, keep the root they had: the supervisor still sees the host.
//
// What the guest makes (tmpfs, proc, sysfs, the guest's own mounts) is
// not there: a copy into a tmpfs of the container lands in the rootfs
// below it, not in the container's view.
func (c *Container) StackView(spec *specs.Spec) error {
	if !ownMountNamespace() {
		// Over the host's "/" it would hide the host from everything.
		return fmt.Errorf("stacking container %s's view over /: this process shares the host's mount namespace: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	dir := filepath.Join(c.shared.View, c.id)
	root, err := unix.OpenTree(unix.AT_FDCWD, filepath.Join(dir, "rootfs"), unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("container %s's view: %w", c.id, err)
	}
	defer unix.Close(root)
	if err := unix.MoveMount(root, "", unix.AT_FDCWD, "/", unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("container %s's view over /: %w", c.id, err)
	}
	for i, m := range spec.Mounts {
		if !isBind(m) || !slices.Contains(c.mounted, "mount-"+strconv.Itoa(i)) {
			continue
		}
		if err := attachAt(root, filepath.Join(dir, "mount-"+strconv.Itoa(i)), m.Destination); err != nil {
			return fmt.Errorf("container %s's view: mounts[%d] (%s): %w", c.id, i, m.Destination, err)
		}
	}
	return nil
}

// attachAt mounts a copy of src on dest, a path resolved inside the tree
// that rootFd is the root of, as the container resolves it (links stay
// in it).
func attachAt(rootFd int, src, dest string) error {
	rel := strings.TrimPrefix(filepath.Clean("/"+dest), "/")
	if rel == "" {
		return nil
	}
	target, err := unix.Openat2(rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		// Made in the guest, in a file system the guest mounted (a
		// tmpfs): not part of this view.
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(target)
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.MoveMount(fd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
}

// ownMountNamespace tells whether this process's mount namespace is other
// than that of the host's init, as far as it can see: where /proc/1 cannot
// be read (a pid namespace's init of another owner), the caller's word
// that it made one (the supervisor checks its own against the one
// `hull create` named) stands.
func ownMountNamespace() bool {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	host, err := os.Readlink("/proc/1/ns/mnt")
	return err != nil || self != host
}

// MountNamespace names this process's mount namespace ("mnt:[N]").
func MountNamespace() (string, error) {
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "", fmt.Errorf("mount namespace: %w", err)
	}
	return ns, nil
}

// OwnMountNamespace tells whether this process's mount namespace is other
// than parent, the one its starter named (MountNamespace's).
func OwnMountNamespace(parent string) (bool, error) {
	self, err := MountNamespace()
	if err != nil {
		return false, err
	}
	return parent != "" && self != parent, nil
}
