package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hull-runtime/hull/internal/procmem"
)

// proc is one host process, as read from /proc.
type proc struct {
	pid, ppid int
	argv      []string
	zombie    bool
}

func (p proc) name() string {
	if len(p.argv) == 0 {
		return ""
	}
	return filepath.Base(p.argv[0])
}

// arg returns the value after flag in the process's arguments.
func (p proc) arg(flag string) (string, bool) {
	for i := 0; i+1 < len(p.argv); i++ {
		if p.argv[i] == flag {
			return p.argv[i+1], true
		}
	}
	return "", false
}

// processes lists the live processes of the host.
func processes() []proc {
	var out []proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		var argv []string
		if s := strings.TrimRight(string(raw), "\x00"); s != "" {
			argv = strings.Split(s, "\x00")
		}
		out = append(out, proc{pid: pid, ppid: ppid, argv: argv, zombie: f[0] == "Z"})
	}
	return out
}

// podProcs are the host processes of one pod, by role.
type podProcs struct {
	roles map[string][]proc // role -> processes
}

// hull roles, in the order they are printed.
const (
	roleShim      = "shim"
	roleQEMU      = "qemu"
	roleVirtiofsd = "virtiofsd"
	roleOther     = "other"
	// runc pods: the shim, and what runs in the pod (pause, the container).
	roleContainer = "containers"
)

// findPod finds a pod's host processes: its shim (`-id POD`), and for
// hull its QEMU (`-name hull-POD`) and virtiofsd (both processes: parent
// and child; `-o source=SHIMROOT/POD/...`), wherever they are in the
// process tree, plus anything else below the shim (role "other" for hull,
// "containers" for runc: pause and the container's process).
func findPod(all []proc, shimName, pod, shimRoot string) (podProcs, error) {
	pp := podProcs{roles: map[string][]proc{}}
	byPid := map[int]proc{}
	var shim *proc
	for i, p := range all {
		if p.zombie {
			continue
		}
		byPid[p.pid] = p
		if p.name() == shimName {
			if id, ok := p.arg("-id"); ok && id == pod {
				if shim != nil {
					return pp, fmt.Errorf("pod %s: two %s processes (%d, %d)", pod, shimName, shim.pid, p.pid)
				}
				shim = &all[i]
			}
		}
	}
	if shim == nil {
		return pp, fmt.Errorf("pod %s: no %s with -id %s", pod, shimName, pod)
	}
	taken := map[int]bool{shim.pid: true}
	pp.roles[roleShim] = []proc{*shim}
	source := "source=" + filepath.Join(shimRoot, pod) + "/"
	for _, p := range byPid {
		switch {
		case strings.HasPrefix(p.name(), "qemu-system"):
			if n, ok := p.arg("-name"); ok && (n == "hull-"+pod || strings.HasPrefix(n, "hull-"+pod+",")) {
				pp.roles[roleQEMU] = append(pp.roles[roleQEMU], p)
				taken[p.pid] = true
			}
		case strings.Contains(p.name(), "virtiofsd"):
			for _, a := range p.argv {
				if strings.Contains(a, source) || strings.HasPrefix(a, strings.TrimPrefix(source, "source=")) {
					pp.roles[roleVirtiofsd] = append(pp.roles[roleVirtiofsd], p)
					taken[p.pid] = true
					break
				}
			}
		}
	}
	// Whatever else descends from the shim.
	below := func(p proc) bool {
		for q, hops := p, 0; hops < 64; hops++ {
			if q.ppid == shim.pid {
				return true
			}
			parent, ok := byPid[q.ppid]
			if !ok {
				return false
			}
			q = parent
		}
		return false
	}
	rest := roleOther
	if shimName != hullShim {
		rest = roleContainer
	}
	for _, p := range byPid {
		if !taken[p.pid] && below(p) {
			pp.roles[rest] = append(pp.roles[rest], p)
		}
	}
	return pp, nil
}

// usage sums the memory of a role's processes; the pids it could not read
// (gone meanwhile) are an error.
func (pp podProcs) usage(role string) (procmem.Usage, error) {
	var total procmem.Usage
	for _, p := range pp.roles[role] {
		u, err := procmem.Read(p.pid)
		if err != nil {
			return total, fmt.Errorf("%s %d (%s): %w", role, p.pid, p.name(), err)
		}
		total = total.Add(u)
	}
	return total, nil
}

func (pp podProcs) count(role string) int { return len(pp.roles[role]) }
