package initsys

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// PowerOff flushes the file systems and ends the VM. It returns only if
// the kernel refused both to power off and to restart.
//
// Restart is the fallback because the host runs QEMU with -no-reboot, so a
// restart ends QEMU just as a power-off does.
func PowerOff() error {
	unix.Sync()
	errOff := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	errRestart := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	return errors.Join(fmt.Errorf("power off: %w", errOff), fmt.Errorf("restart: %w", errRestart))
}
