package sandbox

import (
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/config"
)

// SizeVM sets vCPUs and memory from the spec's limits: the quota over the
// period gives CPUs, the memory limit plus the configured guest default
// gives memory (the guest's own kernel and agent need their share).
func SizeVM(cfg *config.Config, spec *specs.Spec) {
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return
	}
	r := spec.Linux.Resources
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil {
		AddCPUQuota(cfg, *r.CPU.Quota, *r.CPU.Period)
	}
	// A cpuset names CPUs by number: the VM needs that many.
	if r.CPU != nil && r.CPU.Cpus != "" {
		if n := highestCPU(r.CPU.Cpus) + 1; n > cfg.Hypervisor.VCPUs && n <= 256 {
			cfg.Hypervisor.VCPUs = n
		}
	}
	if r.Memory != nil && r.Memory.Limit != nil {
		AddMemory(cfg, *r.Memory.Limit)
	}
}

// AddCPUQuota raises the vCPUs to what a CFS quota over its period needs.
func AddCPUQuota(cfg *config.Config, quota int64, period uint64) {
	if quota <= 0 || period == 0 {
		return
	}
	cpus := int((uint64(quota) + period - 1) / period)
	cfg.Hypervisor.VCPUs = min(max(cpus, cfg.Hypervisor.VCPUs, 1), 256)
}

// AddMemory adds a memory limit, in bytes, to the guest memory.
func AddMemory(cfg *config.Config, limit int64) {
	if limit <= 0 {
		return
	}
	cfg.Hypervisor.MemoryMiB = min(cfg.Hypervisor.MemoryMiB+int(limit>>20), 1<<20)
}

// highestCPU returns the highest CPU number of a cpuset list ("0-3,6"),
// or -1 for a list it cannot read.
func highestCPU(list string) int {
	high := -1
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		n, err := strconv.Atoi(hi)
		if err != nil || n < 0 {
			return -1
		}
		high = max(high, n)
	}
	return high
}
