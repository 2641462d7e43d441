package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hull-runtime/hull/internal/procmem"
	ctrd "github.com/hull-runtime/hull/tests/containerd"
)

// proc is one host process.
type proc = ctrd.Proc

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
		if p.Zombie {
			continue
		}
		byPid[p.Pid] = p
		if p.Name() == shimName {
			if id, ok := p.Arg("-id"); ok && id == pod {
				if shim != nil {
					return pp, fmt.Errorf("pod %s: two %s processes (%d, %d)", pod, shimName, shim.Pid, p.Pid)
				}
				shim = &all[i]
			}
		}
	}
	if shim == nil {
		return pp, fmt.Errorf("pod %s: no %s with -id %s", pod, shimName, pod)
	}
	taken := map[int]bool{shim.Pid: true}
	pp.roles[roleShim] = []proc{*shim}
	source := "source=" + filepath.Join(shimRoot, pod) + "/"
	for _, p := range byPid {
		switch {
		case strings.HasPrefix(p.Name(), "qemu-system"):
			if n, ok := p.Arg("-name"); ok && (n == "hull-"+pod || strings.HasPrefix(n, "hull-"+pod+",")) {
				pp.roles[roleQEMU] = append(pp.roles[roleQEMU], p)
				taken[p.Pid] = true
			}
		case strings.Contains(p.Name(), "virtiofsd"):
			for _, a := range p.Argv {
				if strings.Contains(a, source) || strings.HasPrefix(a, strings.TrimPrefix(source, "source=")) {
					pp.roles[roleVirtiofsd] = append(pp.roles[roleVirtiofsd], p)
					taken[p.Pid] = true
					break
				}
			}
		}
	}
	// Whatever else descends from the shim.
	below := func(p proc) bool {
		for q, hops := p, 0; hops < 64; hops++ {
			if q.PPid == shim.Pid {
				return true
			}
			parent, ok := byPid[q.PPid]
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
		if !taken[p.Pid] && below(p) {
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
		u, err := procmem.Read(p.Pid)
		if err != nil {
			return total, fmt.Errorf("%s %d (%s): %w", role, p.Pid, p.Name(), err)
		}
		total = total.Add(u)
	}
	return total, nil
}

func (pp podProcs) count(role string) int { return len(pp.roles[role]) }
