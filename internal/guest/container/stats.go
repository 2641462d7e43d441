package container

import (
	"github.com/opencontainers/cgroups"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

// unlimited is the least value a cgroup limit file reads as "no limit":
// cgroup v2 writes "max" (read as MaxUint64), v1 a page-aligned
// MaxInt64.
const unlimited = 1 << 62

func limit(v uint64) uint64 {
	if v >= unlimited {
		return 0
	}
	return v
}

// statsResponse turns libcontainer's view of a cgroup (st) and the memory
// events it does not read (ev) into the API's statistics, in v2 terms.
func statsResponse(v2 bool, st *cgroups.Stats, ev memoryEvents) *api.StatsContainerResponse {
	cpu := st.CpuStats
	mem := st.MemoryStats
	r := &api.StatsContainerResponse{
		CgroupVersion: 1,
		Cpu: &api.CpuStats{
			UsageTotalNs:    cpu.CpuUsage.TotalUsage,
			UsageUserNs:     cpu.CpuUsage.UsageInUsermode,
			UsageSystemNs:   cpu.CpuUsage.UsageInKernelmode,
			NrPeriods:       cpu.ThrottlingData.Periods,
			NrThrottled:     cpu.ThrottlingData.ThrottledPeriods,
			ThrottledTimeNs: cpu.ThrottlingData.ThrottledTime,
		},
		Memory: &api.MemoryStats{
			UsageBytes:    mem.Usage.Usage,
			LimitBytes:    limit(mem.Usage.Limit),
			MaxUsageBytes: mem.Usage.MaxUsage,
			Events: &api.MemoryEvents{
				Low: ev.Low, High: ev.High, Max: ev.Max, Oom: ev.OOM, OomKill: ev.OOMKill,
			},
			Stat: make(map[string]uint64, len(mem.Stats)),
		},
		Pids: &api.PidsStats{Current: st.PidsStats.Current, Limit: limit(st.PidsStats.Limit)},
	}
	m := r.Memory
	for k, v := range mem.Stats {
		m.Stat[k] = v
	}
	// The memory.stat names of v2; v1's hierarchical counterparts.
	stat := func(v2name, v1name string) uint64 {
		if v2 {
			return mem.Stats[v2name]
		}
		if v, ok := mem.Stats["total_"+v1name]; ok {
			return v
		}
		return mem.Stats[v1name]
	}
	m.AnonBytes = stat("anon", "rss")
	m.FileBytes = stat("file", "cache")
	m.InactiveFileBytes = stat("inactive_file", "inactive_file")
	m.ActiveFileBytes = stat("active_file", "active_file")
	m.Pgfault = stat("pgfault", "pgfault")
	m.Pgmajfault = stat("pgmajfault", "pgmajfault")
	if m.UsageBytes > m.InactiveFileBytes {
		m.WorkingSetBytes = m.UsageBytes - m.InactiveFileBytes
	}
	if v2 {
		r.CgroupVersion = 2
		m.SwapUsageBytes = mem.SwapOnlyUsage.Usage
		m.SwapLimitBytes = limit(mem.SwapOnlyUsage.Limit)
	} else {
		// v1 counts memory and swap together, and has no memory.events.
		if mem.SwapUsage.Usage > mem.Usage.Usage {
			m.SwapUsageBytes = mem.SwapUsage.Usage - mem.Usage.Usage
		}
		if sw, mm := limit(mem.SwapUsage.Limit), limit(mem.Usage.Limit); sw > mm && mm > 0 {
			m.SwapLimitBytes = sw - mm
		}
		m.Events.Max = mem.Usage.Failcnt
	}
	return r
}
