package initsys

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ConsolePath is the kernel console.
const ConsolePath = "/dev/console"

// SetupConsole puts the console on file descriptors 0, 1 and 2 and returns
// it. The kernel does so before starting init only when the initramfs has
// a /dev/console node; otherwise the Go runtime has put /dev/null there and
// a panic of PID 1 would vanish. Call it once devtmpfs is mounted.
func SetupConsole() (*os.File, error) {
	// Already there (hull's images have the node): opening it again costs
	// 5 to 8 ms of a TCG guest's boot.
	if onConsole() {
		return os.Stderr, nil
	}
	f, err := os.OpenFile(ConsolePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(int(f.Fd()), fd, 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("dup console to fd %d: %w", fd, err)
		}
	}
	return f, nil
}

// onConsole tells whether file descriptors 0, 1 and 2 are the console
// (character device 5:1).
func onConsole() bool {
	for fd := 0; fd <= 2; fd++ {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(5, 1) {
			return false
		}
	}
	return true
}
