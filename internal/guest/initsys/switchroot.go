package initsys

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SwitchedEnv is set in the environment of the agent once it runs on the
// tmpfs root that SwitchRoot made; its value is the SwitchStats, as
// "began-nanoseconds files bytes".
const SwitchedEnv = "HULL_SWITCHED_ROOT"

// newRoot is where SwitchRoot mounts the new root before moving it to /.
const newRoot = "/.hull-root"

// SwitchStats says what a switch of root cost.
type SwitchStats struct {
	// Began is the guest uptime when the switch began.
	Began time.Duration
	Files int
	Bytes int64
}

// Switched tells whether this agent already runs on the root SwitchRoot
// made, and what the switch did. It removes SwitchedEnv from the
// environment, so that children do not inherit it.
func Switched() (SwitchStats, bool) {
	v, ok := os.LookupEnv(SwitchedEnv)
	if !ok {
		return SwitchStats{}, false
	}
	os.Unsetenv(SwitchedEnv)
	var st SwitchStats
	var began int64
	fmt.Sscanf(v, "%d %d %d", &began, &st.Files, &st.Bytes)
	st.Began = time.Duration(began)
	return st, true
}

// SwitchRoot moves PID 1 from the initramfs onto a tmpfs root and runs
// init again there; on success it does not return.
//
// The kernel's initial root (rootfs) cannot be pivot_root'ed away, and
// pivot_root is how the container engine confines a container to its
// root. So PID 1 does what switch_root and LinuxKit's init do: it copies
// the initramfs into a tmpfs, deleting each file once copied so that the
// memory is not held twice, moves the tmpfs onto /, chroots into it and
// executes init again, marked by SwitchedEnv so that it does not switch
// once more. Call it first thing, before anything is mounted.
func SwitchRoot(began time.Duration) (SwitchStats, error) {
	st := SwitchStats{Began: began}
	if err := os.Mkdir(newRoot, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return st, fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return st, fmt.Errorf("switch root: mount tmpfs: %w", err)
	}
	if err := moveTree("/", newRoot, &st); err != nil {
		// The files moved so far are on the new root; go on from there
		// would leave the agent half in each. Give up on the switch: the
		// old root still has what was not moved, and /init is running.
		return st, fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return st, fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return st, fmt.Errorf("switch root: move to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return st, fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return st, fmt.Errorf("switch root: %w", err)
	}
	env := append(os.Environ(), fmt.Sprintf("%s=%d %d %d", SwitchedEnv, int64(began), st.Files, st.Bytes))
	err := unix.Exec("/init", os.Args, env)
	return st, fmt.Errorf("switch root: exec /init: %w", err)
}

// moveTree copies the files of the file system at src into dst and
// deletes each one from src once copied. It stays on src's file system:
// what is mounted below src (dst among it) is left alone.
func moveTree(src, dst string, st *SwitchStats) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	root := fi.Sys().(*syscall.Stat_t)
	var dirs []string // to remove once emptied, deepest last
	err = filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sys := fi.Sys().(*syscall.Stat_t)
		if sys.Dev != root.Dev {
			if fi.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		mode := fi.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(target, mode.Perm()); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			dirs = append(dirs, path)
			return nil
		case mode.IsRegular():
			n, err := copyFile(path, target, mode.Perm())
			if err != nil {
				return err
			}
			st.Bytes += n
		case mode&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		default: // device nodes, fifos, sockets
			if err := unix.Mknod(target, sys.Mode, int(sys.Rdev)); err != nil {
				return fmt.Errorf("mknod %s: %w", target, err)
			}
		}
		if err := unix.Lchown(target, int(sys.Uid), int(sys.Gid)); err != nil {
			return err
		}
		st.Files++
		return os.Remove(path)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		// Not empty when a mount point is in it: left in place.
		os.Remove(dirs[i])
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, perm) // umask
	}
	return n, err
}
