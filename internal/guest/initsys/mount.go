package initsys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Mount is one file system to mount at boot.
type Mount struct {
	Source string
	Target string
	FSType string
	Flags  uintptr
	Data   string
	// Mode is the mode of Target when it has to be created.
	Mode os.FileMode
}

func (m Mount) String() string {
	return fmt.Sprintf("%s on %s type %s (%s)", m.Source, m.Target, m.FSType, m.Data)
}

const (
	secure = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// Mounts is what the agent mounts, in order: each entry may need the ones
// before it (/dev/pts lives on /dev's devtmpfs). Containers will need more
// (their own /proc, /dev/mqueue), but those go in their mount namespaces.
var Mounts = []Mount{
	{Source: "proc", Target: "/proc", FSType: "proc", Flags: secure, Mode: 0o555},
	{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: secure, Mode: 0o555},
	{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: unix.MS_NOSUID, Data: "mode=0755", Mode: 0o755},
	// A private instance, so that container ptys never show in the guest's
	// own /dev/pts; gid 5 is the tty group of every common distribution.
	{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC,
		Data: "newinstance,ptmxmode=0666,mode=0620,gid=5", Mode: 0o755},
	{Source: "shm", Target: "/dev/shm", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777", Mode: 0o1777},
	{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=0755", Mode: 0o755},
	{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_NODEV, Data: "mode=1777", Mode: 0o1777},
	{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: secure, Mode: 0o555},
}

// Symlink is a link to create at boot.
type Symlink struct {
	// Target is what the link points to.
	Target string
	// Link is the path of the link.
	Link string
}

// Symlinks are the /dev links that devtmpfs does not make and that programs
// expect (bash process substitution wants /dev/fd; /dev/ptmx must be the
// private devpts instance's ptmx, not the devtmpfs node of the initial one).
var Symlinks = []Symlink{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
	{"pts/ptmx", "/dev/ptmx"},
}

// Setup mounts Mounts and creates Symlinks. It goes on after an error so
// that the agent gets as far as it can (and can log on a console that may
// be there), and returns all errors joined.
func Setup() error {
	var errs []error
	for _, m := range Mounts {
		if err := MountOne(m); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range Symlinks {
		if err := Link(l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MountOne mounts m unless something is mounted on m.Target already (the
// kernel may have mounted devtmpfs), creating the target first.
func MountOne(m Mount) error {
	if mounted, err := isMountPoint(m.Target); err == nil && mounted {
		return nil
	}
	if err := os.MkdirAll(m.Target, m.Mode); err != nil {
		return fmt.Errorf("mount %s: %w", m, err)
	}
	err := unix.Mount(m.Source, m.Target, m.FSType, m.Flags, m.Data)
	if errors.Is(err, unix.EBUSY) {
		// Already mounted, and /proc was not there to tell us.
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount %s: %w", m, err)
	}
	return nil
}

// isMountPoint tells whether something is mounted on path: whether it is
// on another device than its parent. Unlike /proc/self/mountinfo, this
// works before /proc is mounted and sees only the mount on top.
func isMountPoint(path string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(path), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

// Link makes l.Link point to l.Target, replacing whatever is there: the
// paths are ours (under /dev), and devtmpfs puts a real ptmx node where the
// link must be.
func Link(l Symlink) error {
	if cur, err := os.Readlink(l.Link); err == nil && cur == l.Target {
		return nil
	}
	if err := os.Remove(l.Link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("symlink %s: %w", l.Link, err)
	}
	if err := os.Symlink(l.Target, l.Link); err != nil {
		return fmt.Errorf("symlink %s: %w", l.Link, err)
	}
	return nil
}
