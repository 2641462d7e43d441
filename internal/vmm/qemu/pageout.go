package qemu

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReleaseBootFiles pages out QEMU's mappings of the guest kernel and
// initramfs once the guest has booted. QEMU keeps both files mapped for
// the whole life of the VM, only to reload them on a system reset, which
// hull never asks for (QEMU runs with -no-reboot). For a single VM that is
// about 55 MiB of the host's memory (the Debian kernel's vmlinux is 53 MiB),
// counted in QEMU's PSS. The pages come back from the file if QEMU ever
// touches them again, so this costs nothing but a later read.
//
// process_madvise(MADV_PAGEOUT) leaves alone pages that other processes
// map too (another sandbox's QEMU still booting), so it never takes memory
// from a VM that needs it. It returns the bytes advised.
func (vm *VM) ReleaseBootFiles() (int, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", vm.Pid()))
	if err != nil {
		return 0, fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	defer maps.Close()
	var files []string
	for _, f := range []string{vm.cfg.Kernel, vm.cfg.Initrd} {
		if f != "" {
			files = append(files, f)
		}
	}
	ranges, err := fileMappings(maps, files)
	if err != nil || len(ranges) == 0 {
		return 0, err
	}
	pidfd, err := unix.PidfdOpen(vm.Pid(), 0)
	if err != nil {
		return 0, fmt.Errorf("vm %s: pidfd: %w", vm.cfg.Name, err)
	}
	defer unix.Close(pidfd)
	// struct iovec, laid out by hand: the bases are addresses in QEMU,
	// not pointers this process may hold.
	iov := make([]struct{ base, len uintptr }, len(ranges))
	for i, r := range ranges {
		iov[i].base, iov[i].len = r.start, r.end-r.start
	}
	n, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), unix.MADV_PAGEOUT, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("vm %s: process_madvise: %w", vm.cfg.Name, errno)
	}
	return int(n), nil
}

// addrRange is one mapping of a process, [start, end).
type addrRange struct{ start, end uintptr }

// fileMappings returns the ranges in a /proc/PID/maps listing that map one
// of files. The listing comes from QEMU, which hull does not trust: a
// malformed line ends the parse with an error, and the count is bounded.
func fileMappings(r io.Reader, files []string) ([]addrRange, error) {
	want := map[string]bool{}
	for _, f := range files {
		want[f] = true
	}
	const maxRanges = 1024 // process_madvise takes at most UIO_MAXIOV ranges
	var out []addrRange
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !want[strings.Join(fields[5:], " ")] {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps: bad range %q", fields[0])
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("maps: bad range %q", fields[0])
		}
		if len(out) == maxRanges {
			break
		}
		out = append(out, addrRange{uintptr(start), uintptr(end)})
	}
	return out, sc.Err()
}
