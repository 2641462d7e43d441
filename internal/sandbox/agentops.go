package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// Pause freezes every process of the container.
func (c *Container) Pause(ctx context.Context) error {
	return c.sb.agent.PauseContainer(ctx, c.id)
}

// Resume thaws a paused container.
func (c *Container) Resume(ctx context.Context) error {
	return c.sb.agent.ResumeContainer(ctx, c.id)
}

// Update applies new resource limits (OCI LinuxResources) to the
// container's cgroup in the guest. The VM's own size does not change.
func (c *Container) Update(ctx context.Context, resources *specs.LinuxResources) error {
	b, err := json.Marshal(resources)
	if err != nil {
		return fmt.Errorf("container %s: resources: %w", c.id, err)
	}
	return c.sb.agent.UpdateContainer(ctx, c.id, b)
}

// Stats returns the container's cgroup statistics in the guest.
func (c *Container) Stats(ctx context.Context) (*agent.StatsContainerResponse, error) {
	return c.sb.agent.StatsContainer(ctx, c.id)
}

// WaitOOM blocks until the guest kernel's OOM killer acts in one of the
// sandbox's containers, and returns that container's id.
func (s *Sandbox) WaitOOM(ctx context.Context) (string, error) {
	return s.agent.WaitOOMEvent(ctx)
}

// DialPort connects to port on the loopback of the guest's network
// namespace, which the sandbox's containers share.
func (s *Sandbox) DialPort(port uint16) (net.Conn, error) {
	return s.io.DialPort(s.id, port)
}
