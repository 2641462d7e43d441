package agentclient

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/containerd/errdefs"
	"github.com/hashicorp/yamux"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// IOSession carries the standard streams of a sandbox's processes: one
// yamux session over its own channel, one flow-controlled stream per
// process stream, so that a reader that stops slows only its writer and the
// host buffers at most one window per stream.
type IOSession struct {
	sess *yamux.Session
}

// ioWindow bounds what the host buffers per stream.
const ioWindow = 1 << 20

// NewIOSession starts the host side (the yamux client) over conn.
func NewIOSession(conn net.Conn) (*IOSession, error) {
	cfg := yamux.DefaultConfig()
	cfg.MaxStreamWindowSize = ioWindow
	// A guest under TCG can be slow to answer pings; the session ends with
	// the channel anyway.
	cfg.EnableKeepAlive = false
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(&guestFrames{Conn: conn}, cfg)
	if err != nil {
		return nil, fmt.Errorf("io session: %w", err)
	}
	return &IOSession{sess: sess}, nil
}

// Open opens the stream for one standard stream of a process; it must be
// opened before the call that creates the process.
func (s *IOSession) Open(containerID, execID string, fd agent.StreamHeader_Fd) (net.Conn, error) {
	st, err := s.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("io stream %s/%s/%v: %w", containerID, execID, fd, err)
	}
	if err := agent.WriteStreamHeader(st, &agent.StreamHeader{ContainerId: containerID, ExecId: execID, Fd: fd}); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// DialPort opens a TCP connection to port on the guest's loopback, in the
// network namespace of the pod's containers; pod only names it in the
// agent's logs. A refused connection shows as EOF before any byte.
func (s *IOSession) DialPort(pod string, port uint16) (net.Conn, error) {
	if port == 0 {
		return nil, fmt.Errorf("port forward to port 0: %w", errdefs.ErrInvalidArgument)
	}
	st, err := s.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("port forward stream to %d: %w", port, err)
	}
	if err := agent.WriteStreamHeader(st, &agent.StreamHeader{ContainerId: pod, PortForward: uint32(port)}); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// Close ends the session and every stream.
func (s *IOSession) Close() error { return s.sess.Close() }
