package sandbox

import (
	"context"
	"fmt"
	"net"
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
	conn, err := dialVsockConn(ctx, cid, agent.VsockPort)
	if err != nil {
		return nil, err
	}
	return agentclient.New(conn, timeout), nil
}

func dialVsockConn(ctx context.Context, cid, port uint32) (net.Conn, error) {
	for {
		conn, err := vsock.Dial(cid, port, nil)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vsock cid %d port %d: %w: %w", cid, port, err, errdefs.ErrUnavailable)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
