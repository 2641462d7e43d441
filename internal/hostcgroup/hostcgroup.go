// Package hostcgroup places a container's host processes (its
// supervisor, QEMU and virtiofsd) in the cgroup its spec names
// (linux.cgroupsPath) on the host, with the spec's CPU, cpuset, block IO
// and pids limits. The container's own processes are confined by the same
// limits in the guest; the host cgroup bounds what the VM as a whole takes
// from the host, and is where tools that expect runc's behaviour look.
//
// Memory limits stay in the guest only: the guest's memory is sized from
// the limit already, and QEMU needs more than the container's limit (the
// guest's kernel, the agent, QEMU itself), so the same value on the host
// would have the host's OOM killer end the whole VM. Device rules stay in
// the guest too: QEMU needs /dev/kvm and /dev/net/tun.
package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// minHostPids is the smallest pids limit applied on the host: QEMU and
// virtiofsd run threads of their own, so a container's small limit
// (enforced in the guest all the same) would keep the VM from starting.
const minHostPids = 256

// config is the host cgroup of a spec: its path, and of its limits those
// that belong on the host (see the package comment). A relative path is
// taken from the caller's cgroup by the manager, as runc does.
func config(spec *specs.Spec) *cgroups.Cgroup {
	r := &cgroups.Resources{SkipDevices: true}
	if res := spec.Linux.Resources; res != nil {
		if c := res.CPU; c != nil {
			if c.Shares != nil {
				r.CpuShares = *c.Shares
			}
			if c.Quota != nil {
				r.CpuQuota = *c.Quota
			}
			if c.Period != nil {
				r.CpuPeriod = *c.Period
			}
			r.CpusetCpus, r.CpusetMems = c.Cpus, c.Mems
		}
		if p := res.Pids; p != nil && p.Limit != nil {
			limit := *p.Limit
			// 0 would be written as pids.max 1 (the library's mapping,
			// systemd's): the supervisor, QEMU and virtiofsd could not
			// start a thread. The container's own limit applies in the
			// guest; the host's only keeps the VM's processes bounded.
			if limit >= 0 && limit < minHostPids {
				limit = minHostPids
			}
			r.PidsLimit = &limit
		}
		if b := res.BlockIO; b != nil && b.Weight != nil {
			r.BlkioWeight = *b.Weight
		}
	}
	return &cgroups.Cgroup{Path: filepath.Clean(spec.Linux.CgroupsPath), Resources: r}
}

// ErrNoHierarchy says the host (or the caller's mount namespace) has no
// cgroup file system to put the container's processes in: the container
// then runs with its limits in the guest only.
var ErrNoHierarchy = errors.New("no cgroup hierarchy mounted")

// cgroupMounted reports whether the caller's mount namespace has a cgroup
// file system (a podman in a namespace of its own may have none).
func cgroupMounted() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if _, after, ok := strings.Cut(l, " - "); ok {
			if t, _, _ := strings.Cut(after, " "); t == "cgroup" || t == "cgroup2" {
				return true
			}
		}
	}
	return false
}

// Group is a container's cgroup on the host.
type Group struct {
	m cgroups.Manager
	// self is set when the calling process joined the group: it must
	// leave before the group can go.
	self bool
}

// Join makes the cgroup spec.Linux.CgroupsPath names (relative paths are
// taken from the caller's cgroup, as runc does), applies the limits that
// belong on the host, and moves pids into it. Without a cgroupsPath it
// does nothing and returns nil. On error nothing of it is left.
func Join(spec *specs.Spec, pids ...int) (_ *Group, retErr error) {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil, nil
	}
	if !cgroupMounted() {
		return nil, fmt.Errorf("host cgroup %s: %w", spec.Linux.CgroupsPath, ErrNoHierarchy)
	}
	cg := config(spec)
	r := cg.Resources
	m, err := manager.New(cg)
	if cgroups.IsNotFound(err) {
		return nil, fmt.Errorf("host cgroup %s: %w: %w", spec.Linux.CgroupsPath, err, ErrNoHierarchy)
	}
	if err != nil {
		return nil, fmt.Errorf("host cgroup %s: %w", spec.Linux.CgroupsPath, err)
	}
	g := &Group{m: m, self: slices.Contains(pids, os.Getpid())}
	defer func() {
		if retErr != nil {
			g.Destroy()
		}
	}()
	// Apply makes the cgroup (in the hierarchies the manager uses) and
	// moves a process into it; -1 only makes it.
	for _, pid := range append([]int{-1}, pids...) {
		if pid == 0 {
			continue
		}
		if err := m.Apply(pid); err != nil {
			if cgroups.IsNotFound(err) {
				return nil, fmt.Errorf("host cgroup %s: %w: %w", spec.Linux.CgroupsPath, err, ErrNoHierarchy)
			}
			return nil, fmt.Errorf("host cgroup %s: add %d: %w", spec.Linux.CgroupsPath, pid, err)
		}
	}
	if err := m.Set(r); err != nil {
		return nil, fmt.Errorf("host cgroup %s: limits: %w", spec.Linux.CgroupsPath, err)
	}
	return g, nil
}

// Destroy moves the calling process out (to each hierarchy's parent
// cgroup), then removes the cgroup once the VM's processes are gone. It
// is safe on a nil Group.
func (g *Group) Destroy() error {
	if g == nil {
		return nil
	}
	if g.self {
		for _, p := range g.m.GetPaths() {
			if p != "" {
				leave(p, os.Getpid())
			}
		}
	}
	if err := g.m.Destroy(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("host cgroup: %w", err)
	}
	return nil
}

// leave moves pid out of the cgroup dir, into its nearest ancestor that
// takes it: under cgroup v2 the parent refuses processes (EBUSY) once its
// controllers are on for its children, which making dir did; the
// hierarchy's root always takes them.
func leave(dir string, pid int) {
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
			return // out of the hierarchy
		}
		if err := cgroups.WriteCgroupProc(d, pid); err == nil {
			return
		}
	}
}

// WithChildren returns pid and its children (virtiofsd serves from a child
// it forks), or nothing for pid 0.
func WithChildren(pid int) []int {
	if pid <= 0 {
		return nil
	}
	out := []int{pid}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil && c > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

// Remove removes the host cgroup of a container whose owner died (the
// VM's processes are gone by then); a cgroup that is not there is no
// error.
func Remove(spec *specs.Spec) error {
	if spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return nil
	}
	cg := config(spec)
	m, err := manager.New(cg)
	if err != nil {
		return fmt.Errorf("host cgroup %s: %w", spec.Linux.CgroupsPath, err)
	}
	return (&Group{m: m}).Destroy()
}
