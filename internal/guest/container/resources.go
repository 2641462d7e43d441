package container

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// MaxResourcesSize bounds the LinuxResources of UpdateContainer.
const MaxResourcesSize = 64 << 10

// parseResources decodes the LinuxResources of an update. Like `runc
// update`, it starts from empty memory, CPU, block IO and pids sections,
// so that what the JSON leaves out stays as it is.
func parseResources(b []byte) (*specs.LinuxResources, error) {
	if len(b) > MaxResourcesSize {
		return nil, fmt.Errorf("resources of %d bytes, at most %d: %w", len(b), MaxResourcesSize, errdefs.ErrInvalidArgument)
	}
	no := false
	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{CheckBeforeUpdate: &no},
		CPU:     &specs.LinuxCPU{},
		BlockIO: &specs.LinuxBlockIO{},
		Pids:    &specs.LinuxPids{},
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("resources: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	// An explicit null takes a section away; it changes nothing either.
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	if r.Memory.CheckBeforeUpdate == nil {
		r.Memory.CheckBeforeUpdate = &no
	}
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	if r.BlockIO == nil {
		r.BlockIO = &specs.LinuxBlockIO{}
	}
	if r.Pids == nil {
		r.Pids = &specs.LinuxPids{}
	}
	return r, nil
}

// updatedCgroup returns a copy of cur with r applied as `runc update`
// (runc 1.5's update.go) applies it. cur is left alone: libcontainer
// keeps it until the update has succeeded.
func updatedCgroup(cur *cgroups.Cgroup, r *specs.LinuxResources) *cgroups.Cgroup {
	cg := *cur
	res := cgroups.Resources{}
	if cur.Resources != nil {
		res = *cur.Resources
	}
	cg.Resources = &res
	// Copies of what is changed in place below.
	res.BlkioWeightDevice = slices.Clone(res.BlkioWeightDevice)
	for i, d := range res.BlkioWeightDevice {
		c := *d
		res.BlkioWeightDevice[i] = &c
	}
	for _, p := range []*[]*cgroups.ThrottleDevice{
		&res.BlkioThrottleReadBpsDevice, &res.BlkioThrottleWriteBpsDevice,
		&res.BlkioThrottleReadIOPSDevice, &res.BlkioThrottleWriteIOPSDevice,
	} {
		*p = slices.Clone(*p)
		for i, d := range *p {
			c := *d
			(*p)[i] = &c
		}
	}

	// runc update: a memory limit of -1 (unlimited) without a swap limit
	// makes swap unlimited too, which the kernel needs; CPU idle needs a
	// weight.
	if r.Memory.Limit != nil && *r.Memory.Limit == -1 && r.Memory.Swap == nil {
		r.Memory.Swap = new(int64(0))
	}
	if r.CPU.Idle != nil && r.CPU.Shares == nil {
		r.CPU.Shares = new(uint64(0))
	}

	if r.BlockIO.Weight != nil {
		res.BlkioWeight = *r.BlockIO.Weight
	}
	if r.BlockIO.LeafWeight != nil {
		res.BlkioLeafWeight = *r.BlockIO.LeafWeight
	}
	for _, wd := range r.BlockIO.WeightDevice {
		res.BlkioWeightDevice = upsertWeightDevice(res.BlkioWeightDevice, wd)
	}
	for _, u := range []struct {
		dst *[]*cgroups.ThrottleDevice
		src []specs.LinuxThrottleDevice
	}{
		{&res.BlkioThrottleReadBpsDevice, r.BlockIO.ThrottleReadBpsDevice},
		{&res.BlkioThrottleWriteBpsDevice, r.BlockIO.ThrottleWriteBpsDevice},
		{&res.BlkioThrottleReadIOPSDevice, r.BlockIO.ThrottleReadIOPSDevice},
		{&res.BlkioThrottleWriteIOPSDevice, r.BlockIO.ThrottleWriteIOPSDevice},
	} {
		for _, td := range u.src {
			*u.dst = upsertThrottleDevice(*u.dst, td)
		}
	}

	// A quota without a period, or a period without a quota, leaves the
	// other at its value.
	var (
		p uint64
		q int64
	)
	if r.CPU.Period != nil {
		p = *r.CPU.Period
	}
	if r.CPU.Quota != nil {
		q = *r.CPU.Quota
	}
	switch {
	case (p == 0) == (q == 0):
		res.CpuPeriod, res.CpuQuota = p, q
	case p != 0:
		res.CpuPeriod = p
	default:
		res.CpuQuota = q
	}
	res.CpuBurst = r.CPU.Burst
	if r.CPU.Shares != nil {
		res.CpuShares = *r.CPU.Shares
		res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*r.CPU.Shares)
	}
	if r.CPU.RealtimePeriod != nil {
		res.CpuRtPeriod = *r.CPU.RealtimePeriod
	}
	if r.CPU.RealtimeRuntime != nil {
		res.CpuRtRuntime = *r.CPU.RealtimeRuntime
	}
	res.CpusetCpus = r.CPU.Cpus
	res.CpusetMems = r.CPU.Mems
	res.CPUIdle = r.CPU.Idle
	if r.Memory.Limit != nil {
		res.Memory = *r.Memory.Limit
	}
	if r.Memory.Reservation != nil {
		res.MemoryReservation = *r.Memory.Reservation
	}
	if r.Memory.Swap != nil {
		res.MemorySwap = *r.Memory.Swap
	}
	if r.Memory.CheckBeforeUpdate != nil {
		res.MemoryCheckBeforeUpdate = *r.Memory.CheckBeforeUpdate
	}
	res.PidsLimit = r.Pids.Limit
	res.Unified = maps.Clone(r.Unified)
	// Devices are not updated (nor can they be with runc).
	res.SkipDevices = true
	return &cg
}

func upsertWeightDevice(devs []*cgroups.WeightDevice, wd specs.LinuxWeightDevice) []*cgroups.WeightDevice {
	for i := len(devs) - 1; i >= 0; i-- {
		if devs[i].Major != wd.Major || devs[i].Minor != wd.Minor {
			continue
		}
		if wd.Weight != nil {
			devs[i].Weight = *wd.Weight
		}
		if wd.LeafWeight != nil {
			devs[i].LeafWeight = *wd.LeafWeight
		}
		return devs
	}
	var weight, leaf uint16
	if wd.Weight != nil {
		weight = *wd.Weight
	}
	if wd.LeafWeight != nil {
		leaf = *wd.LeafWeight
	}
	return append(devs, cgroups.NewWeightDevice(wd.Major, wd.Minor, weight, leaf))
}

func upsertThrottleDevice(devs []*cgroups.ThrottleDevice, td specs.LinuxThrottleDevice) []*cgroups.ThrottleDevice {
	for i := len(devs) - 1; i >= 0; i-- {
		if devs[i].Major == td.Major && devs[i].Minor == td.Minor {
			devs[i].Rate = td.Rate
			return devs
		}
	}
	return append(devs, cgroups.NewThrottleDevice(td.Major, td.Minor, td.Rate))
}
