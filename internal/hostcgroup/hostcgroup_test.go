package hostcgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A child process is put in the spec's cgroup with its CPU and pids
// limits; Destroy removes the cgroup once the process is gone.
func TestJoinAndDestroy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if cgroups.IsCgroup2UnifiedMode() {
		t.Skip("checks cgroup v1 files")
	}
	shares, quota, period, pids := uint64(512), int64(50000), uint64(100000), int64(1000)
	path := "/hull-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: path, Resources: &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period},
		Pids:   &specs.LinuxPids{Limit: &pids},
		Memory: &specs.LinuxMemory{Limit: ptr(int64(64 << 20))},
	}}}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	g, err := Join(spec, cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := cgroups.FindCgroupMountpoint("", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cpu, path)
	for file, want := range map[string]string{"cpu.shares": "512", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"} {
		if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s: %q, %v; want %s", file, b, err, want)
		}
	}
	if procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")); !strings.Contains(string(procs), strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("cgroup.procs %q lacks %d", procs, cmd.Process.Pid)
	}
	// Memory stays in the guest: the host cgroup has no limit.
	if mem, err := cgroups.FindCgroupMountpoint("", "memory"); err == nil {
		if b, err := os.ReadFile(filepath.Join(mem, path, "memory.limit_in_bytes")); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(64<<20) {
			t.Error("the container's memory limit was applied on the host")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := g.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left: %v", dir, err)
	}
}

func ptr[T any](v T) *T { return &v }

// A pids limit of 0 (or below the floor) must not reach the host as
// pids.max 1: the supervisor, QEMU and virtiofsd could not start a thread.
func TestPidsLimitFloor(t *testing.T) {
	for _, in := range []int64{0, 1, 50} {
		spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/x", Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &in}}}}
		if got := config(spec).Resources.PidsLimit; got == nil || *got != minHostPids {
			t.Errorf("limit %d: host limit %v, want %d", in, got, minHostPids)
		}
	}
	unlimited := int64(-1)
	spec := &specs.Spec{Linux: &specs.Linux{CgroupsPath: "/x", Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &unlimited}}}}
	if got := config(spec).Resources.PidsLimit; got == nil || *got != -1 {
		t.Errorf("limit -1 (no limit): host limit %v", got)
	}
}

// leave moves a process out of a cgroup into its nearest ancestor that
// takes it.
func TestLeave(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	root := ""
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[2] == "cgroup2" {
			root = f[1]
			break
		}
	}
	if root == "" {
		t.Skip("no cgroup2 hierarchy")
	}
	parent := filepath.Join(root, "hull-leave-"+strconv.Itoa(os.Getpid()))
	child := filepath.Join(parent, "c")
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Skip("cannot make a cgroup:", err)
	}
	defer os.Remove(parent)
	defer os.Remove(child)
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := cgroups.WriteCgroupProc(child, cmd.Process.Pid); err != nil {
		t.Skip("cannot move a process into a cgroup here:", err)
	}
	leave(child, cmd.Process.Pid)
	b, _ := os.ReadFile(filepath.Join(child, "cgroup.procs"))
	if strings.TrimSpace(string(b)) != "" {
		t.Errorf("still in the child cgroup: %q", b)
	}
	b, _ = os.ReadFile(filepath.Join(parent, "cgroup.procs"))
	if !strings.Contains(string(b), strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("not in the parent cgroup: %q", b)
	}
	cmd.Process.Kill()
	cmd.Wait()
}
