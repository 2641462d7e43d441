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
