package agentclient

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/containerd/errdefs"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// Bounds of the cgroup calls.
const (
	// MaxResourcesSize bounds the LinuxResources JSON of UpdateContainer,
	// as the agent does.
	MaxResourcesSize = 64 << 10
	// maxMemoryStat bounds the memory.stat entries of StatsContainer (a
	// 6.x kernel has about 60), and maxStatKey their names.
	maxMemoryStat = 256
	maxStatKey    = 64
	// minOOMPoll is the least time between two GetOOMEvent calls when the
	// agent answers without an event, so that a guest that does so at once
	// cannot make the host spin.
	minOOMPoll = time.Second
)

// validID is what the agent accepts as a container id.
var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// statKey is what the kernel names memory.stat entries with.
var statKey = regexp.MustCompile(`^[a-z0-9_]+$`)

// PauseContainer freezes every process of a running container.
func (c *Client) PauseContainer(ctx context.Context, id string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.PauseContainer(ctx, &agent.PauseContainerRequest{ContainerId: id}); err != nil {
		return native("pause container", err)
	}
	return nil
}

// ResumeContainer thaws a paused container.
func (c *Client) ResumeContainer(ctx context.Context, id string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.ResumeContainer(ctx, &agent.ResumeContainerRequest{ContainerId: id}); err != nil {
		return native("resume container", err)
	}
	return nil
}

// UpdateContainer applies resources, the JSON of an OCI LinuxResources
// (at most MaxResourcesSize bytes), to a container's cgroup as `runc
// update --resources` does: what it leaves out keeps its value.
func (c *Client) UpdateContainer(ctx context.Context, id string, resources []byte) error {
	if len(resources) > MaxResourcesSize {
		return fmt.Errorf("agent update container: resources of %d bytes, at most %d: %w",
			len(resources), MaxResourcesSize, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.UpdateContainer(ctx, &agent.UpdateContainerRequest{ContainerId: id, Resources: resources}); err != nil {
		return native("update container", err)
	}
	return nil
}

// StatsContainer returns the cgroup statistics of a container. Every
// message of the answer is there (not nil); the numbers are the guest's
// and only as true as it is.
func (c *Client) StatsContainer(ctx context.Context, id string) (*agent.StatsContainerResponse, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.StatsContainer(ctx, &agent.StatsContainerRequest{ContainerId: id})
	if err != nil {
		return nil, native("stats container", err)
	}
	if err := checkStats(r); err != nil {
		return nil, fmt.Errorf("agent stats container: %w", err)
	}
	return r, nil
}

func checkStats(r *agent.StatsContainerResponse) error {
	if v := r.CgroupVersion; v != 1 && v != 2 {
		return fmt.Errorf("cgroup version %d: %w", v, errdefs.ErrOutOfRange)
	}
	if r.Cpu == nil {
		r.Cpu = &agent.CpuStats{}
	}
	if r.Pids == nil {
		r.Pids = &agent.PidsStats{}
	}
	if r.Memory == nil {
		r.Memory = &agent.MemoryStats{}
	}
	m := r.Memory
	if m.Events == nil {
		m.Events = &agent.MemoryEvents{}
	}
	if len(m.Stat) > maxMemoryStat {
		return fmt.Errorf("%d memory.stat entries: %w", len(m.Stat), errdefs.ErrOutOfRange)
	}
	for k := range m.Stat {
		if len(k) > maxStatKey || !statKey.MatchString(k) {
			return fmt.Errorf("memory.stat entry %.64q: %w", k, errdefs.ErrOutOfRange)
		}
	}
	if m.Stat == nil {
		m.Stat = map[string]uint64{}
	}
	return nil
}

// WaitOOMEvent waits until the OOM killer has killed a process in one of
// the sandbox's containers and returns the container's id, or until ctx
// is done: no per-call timeout applies. Each event is returned once per
// Client, in order, however the calls are cut short (the agent keeps the
// recent events and the client where it is in them); concurrent calls
// take turns. The agent keeps a bounded number of events: when they come
// faster than the host asks, the oldest are lost. An error that is not
// ctx's means a misbehaving guest: back off before asking again.
func (c *Client) WaitOOMEvent(ctx context.Context) (string, error) {
	select {
	case c.oomTurn <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("agent get oom event: %w", ctx.Err())
	}
	defer func() { <-c.oomTurn }()
	for {
		start := time.Now()
		r, err := c.api.GetOOMEvent(ctx, &agent.GetOOMEventRequest{AfterSeq: c.oomSeq})
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("agent get oom event: %w", ctx.Err())
			}
			return "", native("get oom event", err)
		}
		if r.ContainerId == "" {
			// The agent's wait ended without an event: ask again, but
			// not at once if it answered at once.
			if wait := minOOMPoll - time.Since(start); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return "", fmt.Errorf("agent get oom event: %w", ctx.Err())
				}
			}
			continue
		}
		if r.Seq <= c.oomSeq {
			return "", fmt.Errorf("agent get oom event: event %d after %d: %w", r.Seq, c.oomSeq, errdefs.ErrOutOfRange)
		}
		// Past a bad event too, so that the next call gets the next one.
		c.oomSeq = r.Seq
		if !validID.MatchString(r.ContainerId) {
			return "", fmt.Errorf("agent get oom event: container id %.80q from the guest: %w", r.ContainerId, errdefs.ErrOutOfRange)
		}
		return r.ContainerId, nil
	}
}
