package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/config"
)

func TestSizeVM(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name      string
		res       *specs.LinuxResources
		cpus, mib int
	}{
		{"no limits", nil, 1, 256},
		{"2.5 cpus round up", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(250000), Period: u64(100000)}}, 3, 256},
		{"unlimited quota", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(-1), Period: u64(100000)}}, 1, 256},
		{"memory limit on top of the default", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(512 << 20)}}, 1, 768},
		{"cpuset 0-2,5 needs six", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2,5"}}, 6, 256},
		{"unreadable cpuset ignored", &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "x"}}, 1, 256},
		{"tiny quota still one cpu", &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(1000), Period: u64(100000)}}, 1, 256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			spec := &specs.Spec{Linux: &specs.Linux{Resources: tc.res}}
			SizeVM(&cfg, spec)
			if cfg.Hypervisor.VCPUs != tc.cpus || cfg.Hypervisor.MemoryMiB != tc.mib {
				t.Fatalf("got %d cpus, %d MiB; want %d, %d", cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, tc.cpus, tc.mib)
			}
		})
	}
}
