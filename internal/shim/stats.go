package shim

import (
	"context"
	"math"

	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// Stats reports a container's cgroup statistics from the guest, in
// containerd's cgroup v2 metrics type (the guest runs cgroup v2 whatever
// the host runs), which containerd's CRI turns into the kubelet's stats.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, rpcError(err)
	}
	st, err := c.ctr.Stats(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	a, err := typeurl.MarshalAnyToProto(metrics(st))
	if err != nil {
		return nil, rpcError(err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

// metrics converts the agent's statistics. A limit of 0 from the agent
// means none, which cgroup v2 metrics write as the largest value.
func metrics(st *agent.StatsContainerResponse) *v2.Metrics {
	m := &v2.Metrics{}
	if cpu := st.GetCpu(); cpu != nil {
		m.CPU = &v2.CPUStat{
			UsageUsec: cpu.UsageTotalNs / 1000, UserUsec: cpu.UsageUserNs / 1000, SystemUsec: cpu.UsageSystemNs / 1000,
			NrPeriods: cpu.NrPeriods, NrThrottled: cpu.NrThrottled, ThrottledUsec: cpu.ThrottledTimeNs / 1000,
		}
	}
	if p := st.GetPids(); p != nil {
		m.Pids = &v2.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if mem := st.GetMemory(); mem != nil {
		ms := &v2.MemoryStat{
			Usage: mem.UsageBytes, UsageLimit: unlimited(mem.LimitBytes),
			SwapUsage: mem.SwapUsageBytes, SwapLimit: unlimited(mem.SwapLimitBytes),
			Anon: mem.AnonBytes, File: mem.FileBytes,
			InactiveFile: mem.InactiveFileBytes, ActiveFile: mem.ActiveFileBytes,
			Pgfault: mem.Pgfault, Pgmajfault: mem.Pgmajfault,
		}
		stat := mem.GetStat()
		for name, dst := range map[string]*uint64{
			"kernel_stack": &ms.KernelStack, "slab": &ms.Slab, "sock": &ms.Sock, "shmem": &ms.Shmem,
			"file_mapped": &ms.FileMapped, "file_dirty": &ms.FileDirty, "file_writeback": &ms.FileWriteback,
			"anon_thp": &ms.AnonThp, "inactive_anon": &ms.InactiveAnon, "active_anon": &ms.ActiveAnon,
			"unevictable": &ms.Unevictable, "slab_reclaimable": &ms.SlabReclaimable, "slab_unreclaimable": &ms.SlabUnreclaimable,
			"pgrefill": &ms.Pgrefill, "pgscan": &ms.Pgscan, "pgsteal": &ms.Pgsteal,
			"pgactivate": &ms.Pgactivate, "pgdeactivate": &ms.Pgdeactivate,
			"pglazyfree": &ms.Pglazyfree, "pglazyfreed": &ms.Pglazyfreed,
			"thp_fault_alloc": &ms.ThpFaultAlloc, "thp_collapse_alloc": &ms.ThpCollapseAlloc,
		} {
			*dst = stat[name]
		}
		m.Memory = ms
		if ev := mem.GetEvents(); ev != nil {
			m.MemoryEvents = &v2.MemoryEvents{Low: ev.Low, High: ev.High, Max: ev.Max, Oom: ev.Oom, OomKill: ev.OomKill}
		}
	}
	return m
}

func unlimited(v uint64) uint64 {
	if v == 0 {
		return math.MaxUint64
	}
	return v
}
