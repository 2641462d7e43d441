package storage

import (
	"errors"
	"fmt"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"maps"
	"os"
	"path"
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
	shared *Shared
	id     string
	// points are the mount points made in the backing directory, and
	// mounted those attached in the view, in order, for teardown.
	points, mounted []string
}

// PrepareContainer mounts the container's rootfs and the sources of its
// bind mounts under shared/<id>, read-only on the host where the spec says
// so (a guest's root cannot undo a host-side read-only mount), and returns
// a copy of the spec with those paths as the guest sees them. On error
// nothing stays mounted.
func PrepareContainer(shared *Shared, id, bundle string, spec *specs.Spec) (_ *Container, _ *specs.Spec, retErr error) {
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
	// Searchable, as the share's root (NewShared).
	if err := os.Mkdir(filepath.Join(shared.Backing, id), 0o711); err != nil {
		return nil, nil, fmt.Errorf("container directory: %w", err)
	}
	guest := *spec
	guestRoot := *spec.Root
	guest.Root = &guestRoot
	guestDir := filepath.Join(agent.SharedMountPoint, id)

	made, err := makeMountpoints(rootfs, bundle, spec.Mounts)
	if err != nil {
		return nil, nil, err
	}
	rootRO := roNone
	if spec.Root.Readonly {
		rootRO = roTop
	}
	if err := c.bind(rootfs, "rootfs", true, rootRO, unix.MS_PRIVATE); err != nil {
		return nil, nil, fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	guest.Root.Path = filepath.Join(guestDir, "rootfs")

	guest.Mounts = make([]specs.Mount, 0, len(spec.Mounts))
	var automount []string
	split := 0
	for i, m := range spec.Mounts {
		if !isBind(m) {
			if m.Type == "tmpfs" && made[i] && !slices.ContainsFunc(m.Options, func(o string) bool { return strings.HasPrefix(o, "mode=") }) {
				// The guest gives a tmpfs the mode of the directory it
				// mounts on, as runc does when the image has that
				// directory; one made here for it stands for none, and
				// runc's tmpfs then keeps tmpfs's own 1777 (a non-root
				// process can write to `podman --tmpfs /scratch`).
				m.Options = append(slices.Clone(m.Options), "mode=1777")
			}
			guest.Mounts = append(guest.Mounts, m)
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		name := "mount-" + strconv.Itoa(i)
		ro := roNone
		switch {
		case slices.Contains(m.Options, "rro"):
			ro = roAll
		case slices.Contains(m.Options, "ro"):
			ro = roTop
		}
		recursive := slices.Contains(m.Options, "rbind")
		prop := propagation(m.Options, ro)
		// A private rbind is copied one mount at a time: its top here, each
		// mount below it beside it (name.subK), and the guest puts them back
		// in place, as extra binds after this one. A recursive copy would
		// mount the copies of the submounts on the source's own directories,
		// in the host's mount namespace, where they make rmdir of those
		// directories fail with EBUSY for as long as the container runs
		// (a runc container's copies live in its own namespace, which rmdir
		// does not look at).
		perMount := recursive && prop == unix.MS_PRIVATE
		if err := c.bind(src, name, recursive && !perMount, ro, prop); err != nil {
			return nil, nil, fmt.Errorf("mount %d (%s on %s): %w", i, m.Source, m.Destination, err)
		}
		gm := m
		gm.Source = filepath.Join(guestDir, name)
		gm.Options = bindOptions(m.Options)
		guest.Mounts = append(guest.Mounts, gm)
		if perMount {
			subs, err := hostSubmounts(src)
			if err != nil {
				return nil, nil, fmt.Errorf("mount %d (%s on %s): %w", i, m.Source, m.Destination, err)
			}
			if split += len(subs); split > maxSubmounts {
				return nil, nil, fmt.Errorf("more than %d mounts below private rbinds: %w", maxSubmounts, errdefs.ErrInvalidArgument)
			}
			srcFd := -1
			if len(subs) > 0 { // a file, CRI's resolv.conf say, has none
				if srcFd, err = unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
					return nil, nil, fmt.Errorf("mount %d (%s on %s): %w", i, m.Source, m.Destination, err)
				}
			}
			for k, sub := range subs {
				subName := name + ".sub" + strconv.Itoa(k)
				subRO := roNone
				if ro == roAll {
					subRO = roTop
				}
				err := c.bindSubmount(srcFd, sub, subName, subRO)
				if errors.Is(err, errdefs.ErrNotFound) {
					continue // hidden under a later mount: no rbind shows it either
				}
				if err != nil {
					unix.Close(srcFd)
					return nil, nil, fmt.Errorf("mount %d (%s on %s), %s below it: %w", i, m.Source, m.Destination, sub.rel, err)
				}
				guest.Mounts = append(guest.Mounts, specs.Mount{
					Destination: path.Join(m.Destination, sub.rel),
					Type:        "bind",
					Source:      filepath.Join(guestDir, subName),
					Options:     submountOptions(m.Options),
				})
			}
			if srcFd >= 0 {
				unix.Close(srcFd)
			}
		}
		if recursive && ro == roTop && !perMount {
			subs, err := c.submounts(name)
			if err != nil {
				return nil, nil, fmt.Errorf("mount %d (%s on %s): %w", i, m.Source, m.Destination, err)
			}
			for _, rel := range subs {
				automount = append(automount, filepath.Join(guestDir, name, rel))
			}
		}
	}
	if len(automount) > agent.MaxAutomounts {
		return nil, nil, fmt.Errorf("%d submounts under read-only binds, at most %d: %w", len(automount), agent.MaxAutomounts, errdefs.ErrInvalidArgument)
	}
	if len(automount) > 0 {
		guest.Annotations = maps.Clone(spec.Annotations)
		if guest.Annotations == nil {
			guest.Annotations = map[string]string{}
		}
		guest.Annotations[agent.AutomountAnnotation] = strings.Join(automount, "\n")
	}
	return c, &guest, nil
}

// submounts lists the mounts below the bind attached as name, relative to
// it, shallowest first.
func (c *Container) submounts(name string) ([]string, error) {
	top := filepath.Join(c.shared.View, c.id, name)
	points, err := MountsAt(top)
	if err != nil {
		return nil, err
	}
	var rels []string
	for _, p := range points {
		if rel, err := filepath.Rel(top, p); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			rels = append(rels, rel)
		}
	}
	slices.SortFunc(rels, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	return slices.Compact(rels), nil
}

// maxSubmounts bounds the mounts copied one by one below a container's
// private rbinds (an rbind of / would bring every mount of the host).
const maxSubmounts = 256

// submount is a mount below a bind's source on the host.
type submount struct {
	path string   // absolute, on the host
	rel  string   // below the source
	ids  []uint64 // the ids of the mounts there (mountinfo, statx)
}

// hostSubmounts lists the mount points strictly below src in this mount
// namespace, shallowest first (a mount below another must be put in place
// after it), each once.
func hostSubmounts(src string) ([]submount, error) {
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return nil, fmt.Errorf("source: %w: %w", err, errdefs.ErrNotFound)
	}
	points, err := mountIDsUnder(real)
	if err != nil {
		return nil, err
	}
	var subs []submount
	for _, p := range points {
		rel, err := filepath.Rel(real, p.path)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		subs = append(subs, submount{path: p.path, rel: rel, ids: p.ids})
	}
	slices.SortStableFunc(subs, func(a, b submount) int { return strings.Count(a.rel, "/") - strings.Count(b.rel, "/") })
	return subs, nil
}

// submountOptions are the options of the guest's bind of a submount copied
// beside its rbind: a plain bind, read-only under "rro" (runc's "ro" leaves
// the mounts below the top as they are), with the rbind's recursive flags.
func submountOptions(opts []string) []string {
	out := []string{"bind"}
	for _, o := range opts {
		switch o {
		case "rro":
			out = append(out, "ro")
		case "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime", "rrelatime", "rstrictatime":
			out = append(out, o[1:])
		}
	}
	return out
}

// makeMountpoints creates, in the rootfs, the mount destinations that do
// not exist, as runc does before it makes the rootfs read-only: here the
// rootfs is read-only from the start (on the host), so the guest cannot
// create them. Paths are resolved inside the rootfs as the container sees
// it, as runc and hull-init in the guest resolve them (RESOLVE_IN_ROOT):
// an absolute link is the container's path (Debian's /var/run -> /run,
// which Kubernetes' service-account mount goes through) and ".." stops at
// the rootfs, so nothing outside it is ever created, whatever the image's
// links say. It returns the indexes of the mounts whose destination it
// made.
func makeMountpoints(rootfs, bundle string, mounts []specs.Mount) (map[int]bool, error) {
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	defer root.Close()
	made := map[int]bool{}
	for i, m := range mounts {
		dest := strings.TrimPrefix(filepath.Clean(m.Destination), "/")
		if dest == "" || dest == "." {
			continue
		}
		if underEarlierMount(mounts[:i], dest) {
			// In the guest it lies in a file system mounted before it
			// (runc's /dev/pts in the /dev tmpfs): made there if missing,
			// not in the image, which `podman diff` would show.
			continue
		}
		bad := func(err error) error {
			return fmt.Errorf("mounts[%d] destination %s: %v: %w", i, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		if f, err := pathrs.OpenatInRoot(root, dest); err == nil {
			f.Close()
			continue
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, bad(err)
		}
		// A file bind-mounted needs a file to mount on.
		file := false
		if isBind(m) {
			src := m.Source
			if !filepath.IsAbs(src) {
				src = filepath.Join(bundle, src)
			}
			if st, err := os.Stat(src); err == nil && !st.IsDir() {
				file = true
			}
		}
		dir, err := pathrs.MkdirAllHandle(root, filepath.Dir(dest), 0o755)
		if err != nil {
			return nil, bad(err)
		}
		base := filepath.Base(dest)
		if file {
			// O_EXCL: never through a link left at the last component.
			fd, err := unix.Openat(int(dir.Fd()), base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(fd)
			} else if !errors.Is(err, unix.EEXIST) {
				dir.Close()
				return nil, bad(err)
			}
		} else if err := unix.Mkdirat(int(dir.Fd()), base, 0o755); err == nil {
			made[i] = true
		} else if !errors.Is(err, unix.EEXIST) {
			dir.Close()
			return nil, bad(err)
		}
		dir.Close()
	}
	return made, nil
}

// underEarlierMount tells whether dest (clean, relative to the root) lies
// below the destination of one of earlier.
func underEarlierMount(earlier []specs.Mount, dest string) bool {
	for _, m := range earlier {
		d := strings.TrimPrefix(filepath.Clean("/"+m.Destination), "/")
		if d != "" && strings.HasPrefix(dest, d+"/") {
			return true
		}
	}
	return false
}

// bindFlags are the options a bind mount can take: mount flags and
// propagation. File system options (mode=, size=) mean nothing to a bind,
// and the guest's libcontainer refuses them where runc 1.1 ignored them.
var bindFlags = map[string]bool{
	"ro": true, "rw": true, "bind": true, "rbind": true, "nosuid": true, "suid": true, "nodev": true, "dev": true,
	"noexec": true, "exec": true, "sync": true, "async": true, "dirsync": true, "remount": true, "mand": true, "nomand": true,
	"atime": true, "noatime": true, "diratime": true, "nodiratime": true, "relatime": true, "norelatime": true,
	"strictatime": true, "nostrictatime": true, "nosymfollow": true, "symfollow": true,
	"private": true, "rprivate": true, "shared": true, "rshared": true, "slave": true, "rslave": true,
	"unbindable": true, "runbindable": true, "rro": true, "rrw": true, "rnosuid": true, "rsuid": true,
	"rnodev": true, "rdev": true, "rnoexec": true, "rexec": true, "rnoatime": true, "ratime": true,
	"rrelatime": true, "rnorelatime": true, "rstrictatime": true, "rnostrictatime": true, "tmpcopyup": true,
}

func bindOptions(opts []string) []string {
	var out []string
	for _, o := range opts {
		if bindFlags[o] {
			out = append(out, o)
		}
	}
	return out
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

// readOnly says which mounts of a bind are made read-only.
type readOnly int

const (
	roNone readOnly = iota
	// roTop is runc's "ro" on a bind: the mount itself, not the mounts
	// under it (an rbind's submounts keep their own flags).
	roTop
	// roAll is "rro": every mount of the tree.
	roAll
)

// propagation returns the propagation of a bind's copy in the view:
// MS_SLAVE when the options ask for propagation (slave or shared, recursive
// or not), so that mounts made on the host under the source later reach the
// view, virtiofsd and so the guest; MS_PRIVATE otherwise. Only host to guest
// can work: the guest's mounts are in another kernel, and the slave copy
// sends nothing back to the source. A slave copy of a private source is
// private (it has no master), as a runc bind of it would receive nothing
// either. "rro" stays private whatever it asks: a mount propagated later
// would keep the host's flags, writable, where rro promises that everything
// under the bind is read-only (the CRI refuses rro with propagation too).
func propagation(opts []string, ro readOnly) uintptr {
	if ro == roAll {
		return unix.MS_PRIVATE
	}
	for _, o := range opts {
		switch o {
		case "slave", "rslave", "shared", "rshared":
			return unix.MS_SLAVE
		}
	}
	return unix.MS_PRIVATE
}

// bind attaches a copy of src at view/<id>/<name>. The copy is made
// detached (open_tree), made read-only as ro says and given the propagation
// prop (MS_PRIVATE or MS_SLAVE), and only then attached (move_mount): its
// copy in virtiofsd's namespace is created at attach time from it, so it is
// read-only there too. A remount after the attach would change the host's
// copy only.
//
// With MS_SLAVE the copy receives, from the source's peer group, the mounts
// and unmounts made there later; attached under the view (shared) it
// becomes shared as well as slave, and passes them on to virtiofsd's copy,
// a slave of it. Nothing flows back: a slave sends nothing to its master,
// and the view's own peer group holds only the view.
func (c *Container) bind(src, name string, recursive bool, ro readOnly, prop uintptr) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("source: %w: %w", err, errdefs.ErrNotFound)
	}
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return fmt.Errorf("clone %s: %w", src, err)
	}
	defer unix.Close(fd)
	return c.attach(fd, src, st.IsDir(), name, recursive, ro, prop)
}

// bindSubmount copies, beside its private rbind's top, the mount below it
// that sub names. The guest may already see the directories of that
// source (the top is attached, or another container of the pod binds the
// same volume) and change them meanwhile: the mount is reached from the
// source's fd without following any link, and must be the very mount
// mountinfo listed, so that a directory swapped for a link to the host's
// / is never what gets copied. A mount no longer reachable there (hidden
// by a later one, or moved) is skipped as not found.
func (c *Container) bindSubmount(srcFd int, sub submount, name string, ro readOnly) error {
	fd, err := unix.Openat2(srcFd, sub.rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s: %w", sub.rel, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", sub.rel, err)
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID|unix.STATX_TYPE, &stx); err != nil {
		return fmt.Errorf("%s: %w", sub.rel, err)
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 || !slices.Contains(sub.ids, stx.Mnt_id) {
		return fmt.Errorf("%s is no longer one of the mounts %v listed there: %w", sub.rel, sub.ids, errdefs.ErrNotFound)
	}
	tree, err := unix.OpenTree(fd, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone %s: %w", sub.path, err)
	}
	defer unix.Close(tree)
	return c.attach(tree, sub.path, stx.Mode&unix.S_IFMT == unix.S_IFDIR, name, false, ro, unix.MS_PRIVATE)
}

// attach puts the detached mount fd (a clone of src) at name in the view,
// with its propagation and read-only flags set while it is detached.
func (c *Container) attach(fd int, src string, isDir bool, name string, recursive bool, ro readOnly, prop uintptr) error {
	var err error
	point := filepath.Join(c.shared.Backing, c.id, name)
	target := filepath.Join(c.shared.View, c.id, name)
	if isDir {
		err = os.Mkdir(point, 0o700)
	} else {
		var f *os.File
		f, err = os.OpenFile(point, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	c.points = append(c.points, name)
	setFlags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		setFlags |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(fd, "", setFlags, &unix.MountAttr{Propagation: uint64(prop)}); err != nil {
		return fmt.Errorf("propagation of %s: %w", src, err)
	}
	if ro != roNone {
		roFlags := uint(unix.AT_EMPTY_PATH)
		if ro == roAll {
			roFlags |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(fd, "", roFlags, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("read-only %s: %w", src, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s: %w", target, err)
	}
	c.mounted = append(c.mounted, name)
	return nil
}

// maxStacked bounds the mounts Cleanup takes off one point.
const maxStacked = 64

// Cleanup unmounts what PrepareContainer mounted and removes the
// container's directory. Unmounting goes through a directory fd opened
// without following links: the view is read-only to the guest, and even so
// no path component is trusted.
func (c *Container) Cleanup() error {
	var errs []error
	dirFd, err := unix.Open(filepath.Join(c.shared.View, c.id), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		for i := len(c.mounted) - 1; i >= 0; i-- {
			p := fmt.Sprintf("/proc/self/fd/%d/%s", dirFd, c.mounted[i])
			// Until nothing is mounted there: a host mount made on a slave
			// bind's source itself propagates and stacks on the copy.
			for n := 0; n < maxStacked; n++ {
				err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
				if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
					break
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", c.mounted[i], err))
					break
				}
			}
		}
		unix.Close(dirFd)
	} else if !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("container directory: %w", err))
	}
	c.mounted = nil
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	backing := filepath.Join(c.shared.Backing, c.id)
	for _, name := range c.points {
		_ = os.Remove(filepath.Join(backing, name))
	}
	c.points = nil
	if err := os.Remove(backing); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("container directory: %w", err)
	}
	return nil
}
