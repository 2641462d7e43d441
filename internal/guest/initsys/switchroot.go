package initsys

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// newRoot is where SwitchRoot binds the old root before moving it to /.
const newRoot = "/.hull-root"

// SwitchRoot puts PID 1 on a root that pivot_root can leave. The kernel's
// initial root (rootfs) cannot be pivot_root'ed away, and pivot_root is
// how the container engine confines a container to its root. A recursive
// bind of rootfs, moved onto / and chrooted into, is a mount with a
// parent, which pivot_root accepts: nothing is copied and the agent goes
// on without executing itself again. Call it first thing, before anything
// is mounted.
func SwitchRoot() error {
	if err := os.Mkdir(newRoot, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount("/", newRoot, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("switch root: bind /: %w", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: move to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switch root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	return nil
}
