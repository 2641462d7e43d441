package procmem

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

// PageOutFiles asks the kernel to reclaim the pages of pid's file mappings
// (its executable, libraries and other mapped files) that only pid maps,
// with process_madvise(MADV_PAGEOUT). The files' clean pages leave memory;
// those pid touches again come back from the file, so this costs a read
// later and never correctness. Pages another process maps too are left
// alone by the kernel, so it takes nothing another process needs.
//
// A long-lived process that has finished starting (QEMU once its guest
// booted, a supervisor once its container runs) keeps mostly start-up code
// mapped that it will not run again. It returns the bytes advised.
func PageOutFiles(pid int) (int, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	defer maps.Close()
	ranges, err := fileMappings(maps, pageOutCandidate)
	if err != nil || len(ranges) == 0 {
		return 0, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd of %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	// struct iovec, laid out by hand: the bases are addresses in the other
	// process, not pointers this process may hold.
	iov := make([]struct{ base, len uintptr }, len(ranges))
	for i, r := range ranges {
		iov[i].base, iov[i].len = r.start, r.end-r.start
	}
	n, _, errno := unix.Syscall6(unix.SYS_PROCESS_MADVISE, uintptr(pidfd),
		uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), unix.MADV_PAGEOUT, 0, 0)
	if errno != 0 {
		return 0, fmt.Errorf("process_madvise of %d: %w", pid, errno)
	}
	return int(n), nil
}

// pageOutCandidate says whether a mapping's path is a file worth paging
// out: not a device, not shared memory (a memfd such as a VM's guest RAM
// is not backed by a file, and paging it out would only swap), not a
// deleted file, not a pseudo mapping such as [heap].
func pageOutCandidate(path string) bool {
	return strings.HasPrefix(path, "/") && !strings.HasPrefix(path, "/dev/") &&
		!strings.HasPrefix(path, "/memfd:") && !strings.HasSuffix(path, " (deleted)")
}

// addrRange is one mapping of a process, [start, end).
type addrRange struct{ start, end uintptr }

// maxRanges is process_madvise's limit (UIO_MAXIOV).
const maxRanges = 1024

// fileMappings returns the ranges in a /proc/PID/maps listing whose path
// want accepts. The listing may come from a process hull does not trust
// (QEMU): a malformed line ends the parse with an error, and the count is
// bounded.
func fileMappings(r io.Reader, want func(path string) bool) ([]addrRange, error) {
	var out []addrRange
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !want(strings.Join(fields[5:], " ")) {
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
