// Package procmem reads how much host memory a process costs, as
// proportional set size from /proc/PID/smaps_rollup: shared pages are
// divided among the processes that map them, so the PSS of a VM's
// processes add up to what the VM really costs the host.
package procmem

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Usage is a process's memory in bytes.
type Usage struct {
	RSS, PSS, PSSAnon, PSSFile, PSSShmem uint64
}

// Add returns the sum of u and o.
func (u Usage) Add(o Usage) Usage {
	return Usage{u.RSS + o.RSS, u.PSS + o.PSS, u.PSSAnon + o.PSSAnon, u.PSSFile + o.PSSFile, u.PSSShmem + o.PSSShmem}
}

// String prints the figures in MiB.
func (u Usage) String() string {
	mib := func(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
	return fmt.Sprintf("PSS %s MiB (anon %s, file %s, shmem %s), RSS %s MiB", mib(u.PSS), mib(u.PSSAnon), mib(u.PSSFile), mib(u.PSSShmem), mib(u.RSS))
}

// Read returns the memory of process pid.
func Read(pid int) (Usage, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return Usage{}, err
	}
	defer f.Close()
	var u Usage
	fields := map[string]*uint64{"Rss:": &u.RSS, "Pss:": &u.PSS, "Pss_Anon:": &u.PSSAnon, "Pss_File:": &u.PSSFile, "Pss_Shmem:": &u.PSSShmem}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if p, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return Usage{}, fmt.Errorf("smaps_rollup of %d: %q: %w", pid, sc.Text(), err)
			}
			*p = kb << 10
		}
	}
	return u, sc.Err()
}

// ReadTree returns the memory of process pid and of all its descendants,
// and how many processes that was: a daemon such as virtiofsd forks, and
// counting only the process hull started would leave out what its child
// costs.
func ReadTree(pid int) (Usage, int, error) {
	total, err := Read(pid)
	if err != nil {
		return Usage{}, 0, err
	}
	n := 1
	for _, child := range children(pid) {
		u, m, err := ReadTree(child)
		if err != nil {
			if os.IsNotExist(err) || errors.Is(err, syscall.ESRCH) {
				continue // it exited meanwhile, or is exiting
			}
			return Usage{}, 0, err
		}
		total, n = total.Add(u), n+m
	}
	return total, n, nil
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(field); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
