package container

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/sirupsen/logrus"
)

func TestParseResources(t *testing.T) {
	for name, b := range map[string]string{
		"bad json": `{"memory":`,
		"wrong":    `{"memory":{"limit":"1G"}}`,
		"huge":     `{"unified":{"a":"` + strings.Repeat("x", MaxResourcesSize) + `"}}`,
	} {
		if _, err := parseResources([]byte(b)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Null or absent sections are empty ones.
	r, err := parseResources([]byte(`{"memory":null,"cpu":null,"blockIO":null,"pids":null}`))
	if err != nil || r.Memory == nil || r.CPU == nil || r.BlockIO == nil || r.Pids == nil || r.Memory.CheckBeforeUpdate == nil {
		t.Fatalf("parseResources(nulls) = %+v, %v", r, err)
	}
}

func baseCgroup() *cgroups.Cgroup {
	return &cgroups.Cgroup{
		Path: "/hull/c",
		Resources: &cgroups.Resources{
			Memory:     100 << 20,
			MemorySwap: 200 << 20,
			CpuShares:  512,
			CpuQuota:   50000,
			CpuPeriod:  100000,
			PidsLimit:  new(int64(10)),
			CpusetCpus: "0",
			Unified:    map[string]string{"memory.high": "90M"},
			BlkioThrottleReadBpsDevice: []*cgroups.ThrottleDevice{
				cgroups.NewThrottleDevice(8, 0, 1000),
			},
			BlkioWeightDevice: []*cgroups.WeightDevice{cgroups.NewWeightDevice(8, 0, 100, 0)},
			Freezer:           cgroups.Frozen,
		},
	}
}

func update(t *testing.T, cur *cgroups.Cgroup, js string) *cgroups.Resources {
	t.Helper()
	r, err := parseResources([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return updatedCgroup(cur, r).Resources
}

func TestUpdatedCgroup(t *testing.T) {
	cur := baseCgroup()
	before := fmt.Sprintf("%+v", *cur.Resources)
	beforeDev := *cur.Resources.BlkioThrottleReadBpsDevice[0]

	res := update(t, cur, `{
		"memory": {"limit": 300000000},
		"cpu": {"shares": 1024, "quota": 20000},
		"pids": {"limit": 42},
		"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 5000}, {"major": 8, "minor": 16, "rate": 7}],
			"weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}
	}`)
	switch {
	case res.Memory != 300000000 || res.MemorySwap != 200<<20:
		t.Errorf("memory %d, swap %d", res.Memory, res.MemorySwap)
	case res.CpuShares != 1024 || res.CpuWeight != cgroups.ConvertCPUSharesToCgroupV2Value(1024):
		t.Errorf("shares %d, weight %d", res.CpuShares, res.CpuWeight)
	case res.CpuQuota != 20000 || res.CpuPeriod != 100000:
		t.Errorf("a quota alone keeps the period: quota %d, period %d", res.CpuQuota, res.CpuPeriod)
	case res.PidsLimit == nil || *res.PidsLimit != 42:
		t.Errorf("pids limit %v", res.PidsLimit)
	case len(res.BlkioThrottleReadBpsDevice) != 2 || res.BlkioThrottleReadBpsDevice[0].Rate != 5000:
		t.Errorf("read bps devices %v", res.BlkioThrottleReadBpsDevice)
	case len(res.BlkioWeightDevice) != 1 || res.BlkioWeightDevice[0].Weight != 300:
		t.Errorf("weight devices %v", res.BlkioWeightDevice)
	case !res.SkipDevices:
		t.Error("devices are updated")
	case res.Freezer != cgroups.Frozen:
		t.Errorf("freezer state %q lost", res.Freezer)
	// As runc update: what it does not name in these is not re-applied.
	case res.Unified != nil || res.CpusetCpus != "":
		t.Errorf("unified %v, cpuset %q", res.Unified, res.CpusetCpus)
	}
	// The current config is untouched, devices included.
	if after := fmt.Sprintf("%+v", *cur.Resources); after != before {
		t.Errorf("current resources changed:\n%s\n%s", before, after)
	}
	if *cur.Resources.BlkioThrottleReadBpsDevice[0] != beforeDev || cur.Resources.BlkioWeightDevice[0].Weight != 100 {
		t.Error("current devices changed")
	}

	// Quota and period together; unlimited memory makes swap unlimited.
	res = update(t, cur, `{"cpu": {"quota": 30000, "period": 60000}, "memory": {"limit": -1}}`)
	if res.CpuQuota != 30000 || res.CpuPeriod != 60000 {
		t.Errorf("quota %d, period %d", res.CpuQuota, res.CpuPeriod)
	}
	if res.Memory != -1 || res.MemorySwap != 0 {
		t.Errorf("memory %d, swap %d", res.Memory, res.MemorySwap)
	}
	// A period alone keeps the quota; CPU idle comes with a weight.
	res = update(t, cur, `{"cpu": {"period": 250000, "idle": 1}}`)
	if res.CpuQuota != 50000 || res.CpuPeriod != 250000 {
		t.Errorf("quota %d, period %d", res.CpuQuota, res.CpuPeriod)
	}
	if res.CPUIdle == nil || *res.CPUIdle != 1 || res.CpuShares != 0 {
		t.Errorf("idle %v, shares %d", res.CPUIdle, res.CpuShares)
	}
	// An empty update changes no limit: what it keeps is kept, and what
	// it zeroes (quota and period, as runc does) is not written.
	res = update(t, cur, `{}`)
	if res.Memory != 100<<20 || res.MemorySwap != 200<<20 || res.CpuShares != 512 || res.CpuQuota != 0 || res.CpuPeriod != 0 || res.PidsLimit != nil {
		t.Errorf("empty update: %+v", res)
	}
}

func TestStatsResponse(t *testing.T) {
	st := cgroups.NewStats()
	st.CpuStats.CpuUsage = cgroups.CpuUsage{TotalUsage: 3000, UsageInUsermode: 2000, UsageInKernelmode: 1000}
	st.CpuStats.ThrottlingData = cgroups.ThrottlingData{Periods: 10, ThrottledPeriods: 4, ThrottledTime: 5000}
	st.MemoryStats.Usage = cgroups.MemoryData{Usage: 10 << 20, Limit: math.MaxUint64, MaxUsage: 12 << 20}
	st.MemoryStats.SwapOnlyUsage = cgroups.MemoryData{Usage: 1 << 20, Limit: 64 << 20}
	st.MemoryStats.Stats = map[string]uint64{"anon": 6 << 20, "file": 4 << 20, "inactive_file": 3 << 20, "active_file": 1 << 20, "pgfault": 77, "pgmajfault": 2}
	st.PidsStats = cgroups.PidsStats{Current: 3, Limit: 0}
	ev := memoryEvents{Max: 5, OOM: 2, OOMKill: 1}

	r := statsResponse(true, st, ev)
	m := r.Memory
	switch {
	case r.CgroupVersion != 2:
		t.Errorf("version %d", r.CgroupVersion)
	case r.Cpu.UsageTotalNs != 3000 || r.Cpu.UsageUserNs != 2000 || r.Cpu.UsageSystemNs != 1000:
		t.Errorf("cpu %v", r.Cpu)
	case r.Cpu.NrPeriods != 10 || r.Cpu.NrThrottled != 4 || r.Cpu.ThrottledTimeNs != 5000:
		t.Errorf("throttling %v", r.Cpu)
	case m.UsageBytes != 10<<20 || m.LimitBytes != 0 || m.MaxUsageBytes != 12<<20:
		t.Errorf("memory %v", m)
	case m.SwapUsageBytes != 1<<20 || m.SwapLimitBytes != 64<<20:
		t.Errorf("swap %d of %d", m.SwapUsageBytes, m.SwapLimitBytes)
	case m.AnonBytes != 6<<20 || m.FileBytes != 4<<20 || m.InactiveFileBytes != 3<<20 || m.ActiveFileBytes != 1<<20:
		t.Errorf("memory.stat %v", m)
	case m.Pgfault != 77 || m.Pgmajfault != 2:
		t.Errorf("faults %d, %d", m.Pgfault, m.Pgmajfault)
	case m.WorkingSetBytes != 7<<20:
		t.Errorf("working set %d", m.WorkingSetBytes)
	case m.Events.Max != 5 || m.Events.Oom != 2 || m.Events.OomKill != 1:
		t.Errorf("events %v", m.Events)
	case len(m.Stat) != 6 || m.Stat["anon"] != 6<<20:
		t.Errorf("stat %v", m.Stat)
	case r.Pids.Current != 3 || r.Pids.Limit != 0:
		t.Errorf("pids %v", r.Pids)
	}

	// cgroup v1: hierarchical totals, swap counted with memory, a
	// page-aligned MaxInt64 for no limit.
	st = cgroups.NewStats()
	st.MemoryStats.Usage = cgroups.MemoryData{Usage: 10 << 20, Limit: 32 << 20, Failcnt: 9}
	st.MemoryStats.SwapUsage = cgroups.MemoryData{Usage: 11 << 20, Limit: 9223372036854771712}
	st.MemoryStats.Stats = map[string]uint64{"rss": 1, "total_rss": 6 << 20, "cache": 2, "total_cache": 4 << 20, "total_inactive_file": 12 << 20}
	st.PidsStats = cgroups.PidsStats{Current: 3, Limit: 50}
	r = statsResponse(false, st, memoryEvents{OOMKill: 4})
	m = r.Memory
	switch {
	case r.CgroupVersion != 1:
		t.Errorf("version %d", r.CgroupVersion)
	case m.AnonBytes != 6<<20 || m.FileBytes != 4<<20:
		t.Errorf("anon %d, file %d", m.AnonBytes, m.FileBytes)
	case m.SwapUsageBytes != 1<<20 || m.SwapLimitBytes != 0:
		t.Errorf("swap %d of %d", m.SwapUsageBytes, m.SwapLimitBytes)
	case m.LimitBytes != 32<<20:
		t.Errorf("limit %d", m.LimitBytes)
	case m.WorkingSetBytes != 0:
		t.Errorf("working set %d with more inactive file than usage", m.WorkingSetBytes)
	case m.Events.OomKill != 4 || m.Events.Max != 9:
		t.Errorf("events %v", m.Events)
	case r.Pids.Limit != 50:
		t.Errorf("pids %v", r.Pids)
	}
}

func TestReadMemoryEvents(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 0\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"), 0o644))
	if ev, err := readMemoryEvents(dir, true); err != nil || ev != (memoryEvents{1, 2, 3, 4, 5}) {
		t.Errorf("v2: %+v, %v", ev, err)
	}
	if ev, err := readMemoryEvents(dir, false); err != nil || ev != (memoryEvents{OOMKill: 7}) {
		t.Errorf("v1: %+v, %v", ev, err)
	}
	if _, err := readMemoryEvents(t.TempDir(), true); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no file: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOOMEvents(t *testing.T) {
	ctx := context.Background()
	q := NewOOMEvents(3)
	for _, id := range []string{"a", "b", "c", "d"} {
		q.Add(id)
	}
	// "a" was dropped: the oldest kept comes first.
	for after, want := range map[uint64]OOMEvent{0: {2, "b"}, 1: {2, "b"}, 2: {3, "c"}, 3: {4, "d"}} {
		if ev, err := q.Next(ctx, after); err != nil || ev != want {
			t.Errorf("Next(%d) = %v, %v; want %v", after, ev, err, want)
		}
	}
	// Nothing after the last: a wait, until ctx ends or an event comes.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := q.Next(short, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next(4) without an event: %v", err)
	}
	got := make(chan OOMEvent, 2)
	for _, after := range []uint64{4, 99} {
		go func() {
			ev, err := q.Next(ctx, after)
			if err != nil {
				t.Error(err)
			}
			got <- ev
		}()
	}
	time.Sleep(20 * time.Millisecond)
	q.Add("e")
	// A cursor beyond the last event waits for the next one too.
	for range 2 {
		select {
		case ev := <-got:
			if ev != (OOMEvent{5, "e"}) {
				t.Errorf("woken with %v", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was not woken")
		}
	}
}

// The cgroup v2 watch, on a file that stands in for memory.events: one
// notification each time oom_kill grows, none for other changes.
func TestWatchOOMv2(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	write := func(oom, kill int) {
		must(t, os.WriteFile(events, fmt.Appendf(nil, "low 0\nhigh 0\nmax 9\noom %d\noom_kill %d\n", oom, kill), 0o644))
	}
	write(1, 1)
	notified := make(chan struct{}, 10)
	w, err := watchOOM(dir, true, func() { notified <- struct{}{} }, logrus.NewEntry(logrus.New()))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(n int) {
		t.Helper()
		deadline := time.After(200 * time.Millisecond)
		for got := 0; ; {
			select {
			case <-notified:
				got++
				if got > n {
					t.Fatalf("%d notifications, want %d", got, n)
				}
			case <-deadline:
				if got != n {
					t.Fatalf("%d notifications, want %d", got, n)
				}
				return
			}
		}
	}
	write(2, 1) // an OOM without a kill
	expect(0)
	write(3, 2)
	expect(1)
	write(5, 4) // two kills reported at once
	expect(1)
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop does not end the watch")
	}
	write(6, 5)
	expect(0)

	if _, err := watchOOM(t.TempDir(), true, func() {}, logrus.NewEntry(logrus.New())); err == nil {
		t.Error("watching a directory without memory.events")
	}
	if _, err := watchOOM("", true, func() {}, logrus.NewEntry(logrus.New())); err == nil {
		t.Error("watching no directory")
	}
}
