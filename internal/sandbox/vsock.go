package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/mdlayher/vsock"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/agentclient"
)

// dialVsock connects to the agent's vsock port, retrying while the guest
// boots: unlike the serial port, vsock refuses connections until the agent
// listens.
func dialVsock(ctx context.Context, cid uint32, timeout time.Duration) (*agentclient.Client, error) {
	for {
		conn, err := vsock.Dial(cid, agent.VsockPort, nil)
		if err == nil {
			return agentclient.New(conn, timeout), nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vsock cid %d port %d: %w: %w", cid, agent.VsockPort, err, errdefs.ErrUnavailable)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
