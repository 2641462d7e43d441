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
