package container

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcInfo is what `ps -ef` shows of a process.
type ProcInfo struct {
	Pid, PPid, UID   int
	ElapsedMs, CPUMs uint64
	TTY              uint64
	Cmd              string
}

// maxCmd bounds the command line reported for a process.
const maxCmd = 4096

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// architecture Linux runs on.
const userHZ = 100

// ProcessInfo reads pid's /proc entries. uptime is the system's, in
// seconds (/proc/uptime's first field).
func ProcessInfo(pid int, uptime float64) (ProcInfo, error) {
	info := ProcInfo{Pid: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return info, err
	}
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open || end+2 >= len(stat) {
		return info, fmt.Errorf("malformed %s/stat", dir)
	}
	comm := string(stat[open+1 : end])
	// After the name: state(3) ppid(4) pgrp session tty_nr(7) tpgid flags
	// minflt cminflt majflt cmajflt utime(14) stime(15) cutime cstime
	// priority nice num_threads itrealvalue starttime(22).
	f := strings.Fields(string(stat[end+2:]))
	if len(f) < 20 {
		return info, fmt.Errorf("malformed %s/stat", dir)
	}
	num := func(i int) uint64 { n, _ := strconv.ParseUint(f[i-3], 10, 64); return n }
	info.PPid = int(num(4))
	info.TTY = num(7)
	info.CPUMs = (num(14) + num(15)) * 1000 / userHZ
	if start := float64(num(22)) / userHZ; uptime > start {
		info.ElapsedMs = uint64((uptime - start) * 1000)
	}
	if status, err := os.ReadFile(dir + "/status"); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if rest, ok := strings.CutPrefix(l, "Uid:"); ok {
				if u := strings.Fields(rest); len(u) > 0 {
					n, _ := strconv.Atoi(u[0])
					info.UID = n
				}
				break
			}
		}
	}
	cmdline, _ := os.ReadFile(dir + "/cmdline")
	cmdline = bytes.TrimRight(cmdline, "\x00")
	if len(cmdline) == 0 {
		info.Cmd = "[" + comm + "]"
	} else {
		info.Cmd = string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
	if len(info.Cmd) > maxCmd {
		info.Cmd = info.Cmd[:maxCmd]
	}
	return info, nil
}

// Uptime returns the system's uptime in seconds.
func Uptime() (float64, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("malformed /proc/uptime")
	}
	return strconv.ParseFloat(f[0], 64)
}
