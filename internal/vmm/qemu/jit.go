package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// jitMapping is how QEMU names its translation cache in /proc/PID/maps when
// it keeps the cache in a memfd (-accel tcg,split-wx=on): one writable and
// one executable view of the same memory.
const jitMapping = "/memfd:tcg-jit"

// jitCache is QEMU's translation cache seen from the host: the memfd behind
// it, reached through /proc/PID/map_files. Through it the host reads how
// much of the cache is resident (fstat) and gives back the part past the
// code in use (a hole punched in the memfd), which QEMU itself never does:
// a cache once filled stays resident for the VM's life.
type jitCache struct {
	f    *os.File
	size int64
	// pid is QEMU's, and views the addresses of the cache's mappings in
	// it (the writable one first).
	pid   int
	views []uintptr
}

// openJIT opens pid's translation cache. It fails when QEMU keeps the
// cache in anonymous memory (no split-wx) or /proc/PID/map_files is
// closed to this process (it needs CAP_SYS_ADMIN).
func openJIT(pid int) (*jitCache, error) {
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	defer maps.Close()
	var addr string
	var views []uintptr
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// The views span the cache from offset 0.
		if len(f) < 6 || f[5] != jitMapping || f[2] != "00000000" {
			continue
		}
		start, _, _ := strings.Cut(f[0], "-")
		a, err := strconv.ParseUint(start, 16, 64)
		if err != nil {
			continue
		}
		if strings.HasPrefix(f[1], "rw") {
			// The writable view, through which the memfd is opened.
			addr = f[0]
			views = append([]uintptr{uintptr(a)}, views...)
		} else {
			views = append(views, uintptr(a))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if addr == "" {
		return nil, fmt.Errorf("no %s mapping in qemu pid %d (the translation cache is not in a memfd)", jitMapping, pid)
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/map_files/%s", pid, addr), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("translation cache of qemu pid %d: %w", pid, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	return &jitCache{f: f, size: st.Size, pid: pid, views: views}, nil
}

// resident returns the bytes of the cache that hold memory.
func (j *jitCache) resident() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(j.f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// populate allocates the first n bytes of the cache ahead of QEMU. QEMU's
// writes of new code then only map pages rather than allocate and clear
// them one fault at a time on the vCPU's thread, which under TCG is the
// guest's only thread; the allocation runs on this process's thread, on
// another core, while QEMU loads the guest.
func (j *jitCache) populate(n int64) error {
	n = min(n, j.size)
	if n <= 0 {
		return nil
	}
	if err := unix.Fallocate(int(j.f.Fd()), 0, 0, n); err != nil {
		return err
	}
	return j.mapViews(n)
}

// mapViews maps the first n bytes of the cache into QEMU's page tables,
// in both its views. Allocated pages alone still cost QEMU a fault per
// page and view on first touch: 24,000 faults on the vCPU's thread for a
// start, about 25 ms of it. Reading a byte of every page through
// process_vm_readv takes those faults here instead, as read faults, which
// the kernel serves 16 pages at a time (fault-around); on a shared memfd
// they map the writable view writable, so QEMU's writes of new code fault
// no more.
func (j *jitCache) mapViews(n int64) error {
	const batch = 1024 // IOV_MAX
	page := int64(os.Getpagesize())
	var sink [batch]byte
	local := []unix.Iovec{{Base: &sink[0]}}
	local[0].SetLen(batch)
	remote := make([]unix.RemoteIovec, 0, batch)
	for _, base := range j.views {
		for off := int64(0); off < n; {
			remote = remote[:0]
			for ; off < n && len(remote) < batch; off += page {
				remote = append(remote, unix.RemoteIovec{Base: base + uintptr(off), Len: 1})
			}
			if _, err := unix.ProcessVMReadv(j.pid, local, remote, 0); err != nil {
				return fmt.Errorf("mapping the translation cache of qemu pid %d: %w", j.pid, err)
			}
		}
	}
	return nil
}

// punch frees the cache from off to its end. Only safe while QEMU runs no
// code from there and cannot write there until it resumes (see
// VM.TrimTranslations).
func (j *jitCache) punch(off int64) error {
	if off >= j.size {
		return nil
	}
	return unix.Fallocate(int(j.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, j.size-off)
}

func (j *jitCache) Close() error { return j.f.Close() }

// jitInfo is what QEMU's `info jit` says of its translation cache.
type jitInfo struct {
	// Used is the bytes of code and translation blocks in the cache, past
	// QEMU's prologue at its start.
	Used, Capacity int64
	// Flushes counts the times QEMU emptied the cache.
	Flushes int64
}

var (
	jitUsedRe    = regexp.MustCompile(`(?m)^gen code size\s+(\d+)/(\d+)\s*$`)
	jitFlushesRe = regexp.MustCompile(`(?m)^TB flush count\s+(\d+)\s*$`)
)

// parseJITInfo reads the output of `info jit`. A line missing or out of
// bounds is an error: the caller frees memory by what it says.
func parseJITInfo(s string) (jitInfo, error) {
	m := jitUsedRe.FindStringSubmatch(s)
	f := jitFlushesRe.FindStringSubmatch(s)
	if m == nil || f == nil {
		return jitInfo{}, errors.New("info jit: no code size or flush count")
	}
	var in jitInfo
	var err1, err2, err3 error
	in.Used, err1 = strconv.ParseInt(m[1], 10, 64)
	in.Capacity, err2 = strconv.ParseInt(m[2], 10, 64)
	in.Flushes, err3 = strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return jitInfo{}, fmt.Errorf("info jit: %w", err)
	}
	if in.Capacity <= 0 || in.Used < 0 || in.Used > in.Capacity {
		return jitInfo{}, fmt.Errorf("info jit: code size %d of %d", in.Used, in.Capacity)
	}
	return in, nil
}
