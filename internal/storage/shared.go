package storage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Shared is a sandbox's shared directory. virtiofsd serves View, a
// read-only bind of Backing with shared propagation: the guest can write
// only inside the container mounts attached under View, never in the tree
// around them, and mounts attached on the host after virtiofsd started
// reach virtiofsd's own mount namespace (a slave of the host's).
//
// The directory itself is bound on itself unbindable: a recursive bind or
// clone of one of its ancestors (a container's rbind of "/" or "/run", this
// sandbox's or another's, or runc's) skips it and all under it. Without
// that, a container mount that receives propagation (a slave of its source)
// and whose source holds the view would hold a slave copy of the view
// inside the view, and each later attach would copy the tree into itself:
// the mount count multiplies with every such container.
type Shared struct {
	// Backing is where the host makes directories; the guest never sees it
	// writable.
	Backing string
	// View is what virtiofsd serves.
	View string
}

// NewShared sets up dir/fs (backing) and dir/view. On error nothing is
// left mounted.
func NewShared(dir string) (_ *Shared, retErr error) {
	s := &Shared{Backing: filepath.Join(dir, "fs"), View: filepath.Join(dir, "view")}
	// dir keeps the host's users out. What it holds is searchable, since
	// the guest sees the backing directory's mode as the share's root,
	// and the root of a container with a user namespace is not the
	// guest's root.
	for _, d := range []string{dir, s.Backing, s.View} {
		mode := os.FileMode(0o711)
		if d == dir {
			mode = 0o700
		}
		if err := os.Mkdir(d, mode); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("shared directory: %w", err)
		}
	}
	// dir on itself, private at once (leaving the peer group of the mount
	// that holds it, so that nothing made below reaches other namespaces);
	// unbindable once the view is bound from it, as an unbindable mount
	// cannot be the source of a bind.
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("shared directory: bind %s: %w", dir, err)
	}
	defer func() {
		if retErr != nil {
			unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		}
	}()
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("shared directory: %w", err)
	}
	if err := unix.Mount(s.Backing, s.View, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("shared directory: bind %s: %w", s.View, err)
	}
	defer func() {
		if retErr != nil {
			unix.Unmount(s.View, unix.MNT_DETACH)
		}
	}()
	if err := unix.Mount("", s.View, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return nil, fmt.Errorf("shared directory: read-only %s: %w", s.View, err)
	}
	// Shared as a group of its own (it is a private copy of dir's mount).
	if err := unix.Mount("", s.View, "", unix.MS_SHARED, ""); err != nil {
		return nil, fmt.Errorf("shared directory: %w", err)
	}
	if err := unix.Mount("", dir, "", unix.MS_UNBINDABLE, ""); err != nil {
		return nil, fmt.Errorf("shared directory: unbindable %s: %w", dir, err)
	}
	return s, nil
}

// Close unmounts the view and everything under it, deepest first, then the
// directory's bind on itself, and removes the directory's tree: with the
// directories that containers not yet cleaned up still have in Backing
// (a pod's VM can go before its containers' own cleanup, when the VM
// died and containerd deletes them all at once), since those are only
// empty directories and mount points once nothing is mounted.
func (s *Shared) Close() error {
	dir := filepath.Dir(s.View)
	if err := UnmountUnder(s.View); err != nil {
		return err
	}
	for _, p := range []string{s.View, dir} {
		if err := UnmountSelf(p); err != nil {
			return err
		}
	}
	// Detached mounts leave the namespace at once; one that is still
	// there stops the removal rather than being walked.
	if left, err := MountsAt(dir); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("shared directory %s: %s is still mounted", dir, left[0])
	}
	if err := RemoveEmptyTree(dir); err != nil {
		return fmt.Errorf("shared directory: %w", err)
	}
	return nil
}

// mountsUnder returns the mount points strictly below dir, and dir itself
// when self is set.
func mountsUnder(dir string, self bool) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if strings.HasPrefix(p, dir+"/") || self && p == dir {
			points = append(points, p)
		}
	}
	return points, sc.Err()
}

// mountID is a mount point and the ids of the mounts there.
type mountID struct {
	path string
	ids  []uint64
}

// mountIDsUnder returns the mount points strictly below dir, each once,
// with the ids of every mount listed there, in mountinfo's order of first
// appearance. Which of them is on top is not told by the order: a mount
// propagated onto a point is tucked under the one already there but
// listed after it.
func mountIDsUnder(dir string) ([]mountID, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountID
	at := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if !strings.HasPrefix(p, dir+"/") {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if i, ok := at[p]; ok {
			out[i].ids = append(out[i].ids, id)
			continue
		}
		at[p] = len(out)
		out = append(out, mountID{path: p, ids: []uint64{id}})
	}
	return out, sc.Err()
}

// MountsAt returns the mount points at dir or below it: what must be
// gone before dir's tree is removed (RemoveEmptyTree).
func MountsAt(dir string) ([]string, error) { return mountsUnder(dir, true) }

// UnmountUnder unmounts every mount strictly below dir, deepest first,
// never following links.
func UnmountUnder(dir string) error {
	points, err := mountsUnder(dir, false)
	if err != nil {
		return err
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// UnmountSelf unmounts the mount on dir itself, the top one, without
// following a link; dir that is no mount point (or is gone) is no error.
func UnmountSelf(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, \011,
// \012, \134) the kernel writes in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
