package qemu

import (
	"fmt"

	"github.com/hull-runtime/hull/internal/procmem"
)

// ReleaseColdPages pages out QEMU's file mappings once the guest has
// booted: the guest kernel and initramfs, which QEMU keeps mapped for the
// VM's whole life only to reload them on a system reset that hull never
// asks for (-no-reboot), and the start-up code of its binary and
// libraries. For a single VM that was about 18 MiB of QEMU's own files and
// the kernel and initramfs (55 MiB with Debian's kernel), counted in its
// PSS. Pages QEMU runs again come back from the files, and pages another
// VM's QEMU maps too are left alone (see procmem.PageOutFiles). Guest RAM
// (a memfd) is not a file and is never touched. It returns the bytes
// advised.
func (vm *VM) ReleaseColdPages() (int, error) {
	n, err := procmem.PageOutFiles(vm.Pid())
	if err != nil {
		return 0, fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	return n, nil
}
