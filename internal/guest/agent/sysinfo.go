package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the guest kernel tells what GetGuestDetails reports.
const (
	meminfoPath   = "/proc/meminfo"
	uptimePath    = "/proc/uptime"
	cpuOnlinePath = "/sys/devices/system/cpu/online"
)

func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", os.NewSyscallError("uname", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// parseMeminfo returns MemTotal and MemAvailable in bytes.
func parseMeminfo(r io.Reader) (total, available uint64, err error) {
	v, err := meminfoBytes(r, "MemTotal", "MemAvailable")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// parseUnwritten returns the bytes of file pages that are dirty or being
// written back (Dirty plus Writeback).
func parseUnwritten(r io.Reader) (uint64, error) {
	v, err := meminfoBytes(r, "Dirty", "Writeback")
	if err != nil {
		return 0, err
	}
	return v[0] + v[1], nil
}

// meminfoBytes returns the values of keys, in bytes, from /proc/meminfo's
// text; each key must be there.
func meminfoBytes(r io.Reader, keys ...string) ([]uint64, error) {
	vals := make([]uint64, len(keys))
	have := make([]bool, len(keys))
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		i := slices.Index(keys, key)
		if !ok || i < 0 {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return nil, fmt.Errorf("meminfo: bad %s line %q", key, sc.Text())
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("meminfo: %s: %w", key, err)
		}
		vals[i], have[i] = kb*1024, true
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, ok := range have {
		if !ok {
			return nil, fmt.Errorf("meminfo: no %s", keys[i])
		}
	}
	return vals, nil
}

func parseCPUList(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty CPU list")
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("CPU list %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = strconv.ParseUint(hi, 10, 32); err != nil {
				return 0, fmt.Errorf("CPU list %q: %w", s, err)
			}
			if last < first {
				return 0, fmt.Errorf("CPU list %q: range %s backwards", s, part)
			}
		}
		n += int(last - first + 1)
	}
	return n, nil
}

// parseUptime returns the first number of /proc/uptime, seconds with a
// fraction, in milliseconds, without going through floating point.
func parseUptime(s string) (uint64, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("uptime: empty")
	}
	secs, frac, _ := strings.Cut(fields[0], ".")
	sec, err := strconv.ParseUint(secs, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("uptime %q: %w", fields[0], err)
	}
	frac = (frac + "000")[:3]
	ms, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("uptime %q: %w", fields[0], err)
	}
	return sec*1000 + ms, nil
}

func readMeminfo() (total, available uint64, err error) {
	f, err := os.Open(meminfoPath)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseMeminfo(f)
}

// readUnwritten returns parseUnwritten of the guest's /proc/meminfo.
func readUnwritten() (uint64, error) {
	f, err := os.Open(meminfoPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseUnwritten(f)
}

func readOnlineCPUs() (int, error) {
	b, err := os.ReadFile(cpuOnlinePath)
	if err != nil {
		return 0, err
	}
	return parseCPUList(string(b))
}

func readUptimeMillis() (uint64, error) {
	b, err := os.ReadFile(uptimePath)
	if err != nil {
		return 0, err
	}
	return parseUptime(string(b))
}
