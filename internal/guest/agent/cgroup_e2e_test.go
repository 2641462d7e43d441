package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/agentclient"
)

// The cgroup calls end to end: pause and resume, update, statistics and
// OOM events, on whatever cgroup version this machine has (a hull guest
// has v2).

// cgroupFile is the path of file in container id's cgroup; controller
// names the v1 hierarchy.
func cgroupFile(id, controller, file string) string {
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join("/sys/fs/cgroup", cgroupParent, id, file)
	}
	return filepath.Join("/sys/fs/cgroup", controller, cgroupParent, id, file)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// run creates and starts container id; it is removed, with force, when t
// ends.
func (e *e2e) run(t *testing.T, id string, spec []byte) {
	t.Helper()
	if _, err := e.client.CreateContainer(e.ctx, &api.CreateContainerRequest{ContainerId: id, Spec: spec}); err != nil {
		t.Fatalf("CreateContainer %s: %v", id, err)
	}
	t.Cleanup(func() {
		e.client.RemoveContainer(e.ctx, &api.RemoveContainerRequest{ContainerId: id, Force: true})
	})
	if _, err := e.client.StartContainer(e.ctx, &api.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", id, err)
	}
}

func TestContainerCgroupEndToEnd(t *testing.T) {
	e := setupE2E(t)
	c, ctx := e.client, e.ctx
	v2 := cgroups.IsCgroup2UnifiedMode()
	t.Logf("cgroup v2: %v", v2)

	// A second connection, through the host's client, for the calls the
	// shim makes. Its timeout is short: WaitOOMEvent must not apply it.
	conn := dial(t, e.apiSock)
	ac := agentclient.New(conn, 2*time.Second)
	t.Cleanup(func() { ac.Close() })

	t.Run("pause", func(t *testing.T) {
		// The container counts in a file of its rootfs.
		e.run(t, "pz", e.specWith("pz", func(s *specs.Spec) { s.Root.Readonly = false },
			"sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done"))
		counter := filepath.Join(e.rootfs, "tmp/n")
		time.Sleep(200 * time.Millisecond)
		if err := ac.ResumeContainer(ctx, "pz"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("resume of a running container: %v", err)
		}
		if err := ac.PauseContainer(ctx, "pz"); err != nil {
			t.Fatal(err)
		}
		state := cgroupFile("pz", "freezer", "freezer.state")
		if v2 {
			state = cgroupFile("pz", "", "cgroup.freeze")
		}
		if got := readTrim(t, state); got != "FROZEN" && got != "1" {
			t.Errorf("%s: %q", state, got)
		}
		n1 := readTrim(t, counter)
		time.Sleep(300 * time.Millisecond)
		if n2 := readTrim(t, counter); n2 != n1 {
			t.Errorf("paused container counted on: %s, then %s", n1, n2)
		}
		if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "pz", ExecId: "x", Process: e.process(false, "true")}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("exec in a paused container: %v", err)
		}
		// Statistics of a paused container.
		if _, err := ac.StatsContainer(ctx, "pz"); err != nil {
			t.Errorf("stats while paused: %v", err)
		}
		if err := ac.PauseContainer(ctx, "pz"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("second pause: %v", err)
		}
		if err := ac.ResumeContainer(ctx, "pz"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if n3 := readTrim(t, counter); n3 == n1 {
			t.Errorf("resumed container does not count: still %s", n3)
		}
		// A paused container is removed with force.
		if err := ac.PauseContainer(ctx, "pz"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		e.remove("pz", true)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("removing the paused container took %s", d)
		}
		if err := ac.PauseContainer(ctx, "pz"); !errdefs.IsNotFound(err) {
			t.Errorf("pause of a removed container: %v", err)
		}
		if err := ac.ResumeContainer(ctx, "pz"); !errdefs.IsNotFound(err) {
			t.Errorf("resume of a removed container: %v", err)
		}
	})

	t.Run("pause-created", func(t *testing.T) {
		if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "cr", Spec: e.spec("cr", "true")}); err != nil {
			t.Fatal(err)
		}
		if err := ac.PauseContainer(ctx, "cr"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("pause of a created container: %v", err)
		}
		e.remove("cr", false)
	})

	t.Run("update-and-stats", func(t *testing.T) {
		e.run(t, "up", e.spec("up", "sh", "-c", "a=x; i=0; while [ $i -lt 22 ]; do a=$a$a; i=$((i+1)); done; sleep 100; true"))
		time.Sleep(300 * time.Millisecond)
		pidsMax, memMax := cgroupFile("up", "pids", "pids.max"), cgroupFile("up", "memory", "memory.limit_in_bytes")
		if v2 {
			memMax = cgroupFile("up", "", "memory.max")
		}
		if err := ac.UpdateContainer(ctx, "up", []byte(`{"pids":{"limit":42},"memory":{"limit":268435456}}`)); err != nil {
			t.Fatal(err)
		}
		if got := readTrim(t, pidsMax); got != "42" {
			t.Errorf("pids.max %s, want 42", got)
		}
		if got := readTrim(t, memMax); got != "268435456" {
			t.Errorf("%s: %s, want 268435456", memMax, got)
		}
		// What an update leaves out stays: the memory limit.
		if err := ac.UpdateContainer(ctx, "up", []byte(`{"pids":{"limit":50}}`)); err != nil {
			t.Fatal(err)
		}
		if got := readTrim(t, pidsMax); got != "50" {
			t.Errorf("pids.max %s, want 50", got)
		}
		if got := readTrim(t, memMax); got != "268435456" {
			t.Errorf("%s: %s after a pids update, want 268435456", memMax, got)
		}
		st, err := ac.StatsContainer(ctx, "up")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("stats: %v", st)
		m := st.Memory
		wantVersion := uint32(1)
		if v2 {
			wantVersion = 2
		}
		switch {
		case st.CgroupVersion != wantVersion:
			t.Errorf("cgroup version %d, want %d", st.CgroupVersion, wantVersion)
		case m.UsageBytes == 0 || m.AnonBytes == 0 || len(m.Stat) == 0:
			t.Errorf("memory usage %d, anon %d, %d memory.stat entries", m.UsageBytes, m.AnonBytes, len(m.Stat))
		case m.LimitBytes != 256<<20:
			t.Errorf("memory limit %d, want %d", m.LimitBytes, 256<<20)
		case m.WorkingSetBytes == 0 || m.WorkingSetBytes > m.UsageBytes:
			t.Errorf("working set %d of usage %d", m.WorkingSetBytes, m.UsageBytes)
		case m.Pgfault == 0:
			t.Error("no page faults")
		case st.Pids.Current == 0 || st.Pids.Limit != 50:
			t.Errorf("pids %d, limit %d", st.Pids.Current, st.Pids.Limit)
		case st.Cpu.UsageTotalNs == 0:
			t.Error("no CPU time")
		}
		for name, res := range map[string]string{
			"bad json": `{"pids":`,
			"huge":     `{"unified":{"x":"` + strings.Repeat("y", 64<<10) + `"}}`,
		} {
			if _, err := c.UpdateContainer(ctx, &api.UpdateContainerRequest{ContainerId: "up", Resources: []byte(res)}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("update with %s: %v", name, err)
			}
		}
		if err := ac.UpdateContainer(ctx, "nope", []byte(`{}`)); !errdefs.IsNotFound(err) {
			t.Errorf("update of an unknown container: %v", err)
		}
		if _, err := ac.StatsContainer(ctx, "nope"); !errdefs.IsNotFound(err) {
			t.Errorf("stats of an unknown container: %v", err)
		}
		e.remove("up", true)
	})

	t.Run("oom", func(t *testing.T) {
		// Waiting for an OOM event blocks none of the other calls on the
		// connection, nor is it cut by the client's timeout.
		got := make(chan string, 1)
		waitErr := make(chan error, 1)
		go func() {
			id, err := ac.WaitOOMEvent(ctx)
			got <- id
			waitErr <- err
		}()
		time.Sleep(200 * time.Millisecond)
		for range 5 {
			if _, err := ac.Version(ctx); err != nil {
				t.Fatalf("a call while WaitOOMEvent waits: %v", err)
			}
		}
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := c.GetOOMEvent(short, &api.GetOOMEventRequest{})
		cancel()
		if status.Code(err) != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("GetOOMEvent with no event before the deadline: %v", err)
		}

		const limit = 32 << 20
		e.run(t, "oom", e.specWith("oom", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: new(int64(limit)), Swap: new(int64(limit))}}
		}, "sh", "-c", "a=x; while :; do a=$a$a; done"))
		if got := e.wait("oom", ""); got != 137 {
			t.Errorf("exit status %d, want 137 (SIGKILL)", got)
		}
		select {
		case id := <-got:
			if err := <-waitErr; err != nil || id != "oom" {
				t.Fatalf("WaitOOMEvent = %q, %v", id, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no OOM event")
		}
		st, err := ac.StatsContainer(ctx, "oom")
		if err != nil {
			t.Fatal(err)
		}
		if st.Memory.Events.OomKill == 0 {
			t.Errorf("oom_kill count 0 after an OOM kill: %v", st.Memory.Events)
		}
		// The raw call from the start sees the same event: delivery does
		// not consume.
		r, err := c.GetOOMEvent(ctx, &api.GetOOMEventRequest{})
		if err != nil || r.ContainerId != "oom" || r.Seq != 1 {
			t.Errorf("GetOOMEvent(after 0) = %v, %v", r, err)
		}
		e.remove("oom", false)
	})
}
