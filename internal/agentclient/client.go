// Package agentclient is the host's side of the agent API: a ttRPC client
// over whatever stream reaches the guest (a virtio-serial port or vsock)
// that bounds the time of every call and checks every answer, because the
// guest is not trusted.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// Bounds on what the host accepts from a guest.
const (
	maxString  = 256
	maxModules = 128
)

// Client calls the agent of one VM.
type Client struct {
	conn    net.Conn
	tc      *ttrpc.Client
	api     agent.AgentService
	timeout time.Duration // bound of each call that has no shorter deadline

	// oomTurn is held by the one WaitOOMEvent that asks the agent, and
	// oomSeq, which only that call reads and writes, is the number of the
	// last OOM event it returned.
	oomTurn chan struct{}
	oomSeq  uint64
}

// New wraps conn. timeout bounds every call, its writes included.
func New(conn net.Conn, timeout time.Duration) *Client {
	tc := ttrpc.NewClient(&writeBounded{Conn: newAgentFrames(conn), timeout: timeout})
	return &Client{conn: conn, tc: tc, api: agent.NewAgentClient(tc), timeout: timeout, oomTurn: make(chan struct{}, 1)}
}

// Close closes the connection; calls in flight fail.
func (c *Client) Close() error { return c.tc.Close() }

func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// WaitReady waits until the agent answers, up to ctx's deadline, and
// returns its answer to Version for CheckVersion. The request waits in the
// channel until the agent opens its end, so one call suffices: no
// polling, no duplicate requests. Version's answer proves the agent serves
// as Check's would, and a boot costs one round trip less.
func (c *Client) WaitReady(ctx context.Context) (*agent.VersionResponse, error) {
	r, err := c.api.Version(ctx, &agent.VersionRequest{})
	if err != nil {
		return nil, native("version", err)
	}
	return r, nil
}

// Check asks the agent whether it serves.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.Check(ctx, &agent.CheckRequest{})
	if err != nil {
		return native("check", err)
	}
	if r.GetStatus() != agent.CheckResponse_SERVING {
		return fmt.Errorf("agent check: status %v: %w", r.GetStatus(), errdefs.ErrUnavailable)
	}
	return nil
}

// Version returns the agent's version and refuses an API level the host
// does not speak.
func (c *Client) Version(ctx context.Context) (*agent.VersionResponse, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.version(ctx)
}

func (c *Client) version(ctx context.Context) (*agent.VersionResponse, error) {
	r, err := c.WaitReady(ctx)
	if err != nil {
		return nil, err
	}
	return r, CheckVersion(r)
}

// CheckVersion refuses an answer to Version that is malformed or names an
// API level the host does not speak.
func CheckVersion(r *agent.VersionResponse) error {
	if err := checkStrings(r.AgentVersion, r.Commit); err != nil {
		return fmt.Errorf("agent version: %w", err)
	}
	if r.ApiVersion != agent.APIVersion {
		return fmt.Errorf("agent speaks API %d, host speaks %d (rebuild the guest image with `hull image build`): %w",
			r.ApiVersion, agent.APIVersion, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// GuestDetails returns what the agent reports of the guest.
func (c *Client) GuestDetails(ctx context.Context) (*agent.GetGuestDetailsResponse, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.GetGuestDetails(ctx, &agent.GetGuestDetailsRequest{})
	if err != nil {
		return nil, native("guest details", err)
	}
	if len(r.LoadedModules) > maxModules {
		return nil, fmt.Errorf("agent guest details: %d modules: %w", len(r.LoadedModules), errdefs.ErrOutOfRange)
	}
	if err := checkStrings(append([]string{r.KernelRelease, r.AgentVersion, r.Channel}, r.LoadedModules...)...); err != nil {
		return nil, fmt.Errorf("agent guest details: %w", err)
	}
	return r, nil
}

// DestroySandbox asks the agent to sync and power the VM off.
func (c *Client) DestroySandbox(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.DestroySandbox(ctx, &agent.DestroySandboxRequest{}); err != nil {
		return native("destroy sandbox", err)
	}
	return nil
}

// CreateSandbox mounts the shared file system with tag (if not empty) and
// sets the hostname (if not empty).
func (c *Client) CreateSandbox(ctx context.Context, tag, hostname string) error {
	return c.CreateSandboxWith(ctx, &agent.CreateSandboxRequest{SharedFsTag: tag, Hostname: hostname})
}

// CreateSandboxWith sends a complete CreateSandbox request (with the
// network to configure).
func (c *Client) CreateSandboxWith(ctx context.Context, req *agent.CreateSandboxRequest) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.CreateSandbox(ctx, req); err != nil {
		return native("create sandbox", err)
	}
	return nil
}

func checkStrings(ss ...string) error {
	for _, s := range ss {
		if len(s) > maxString {
			return fmt.Errorf("string of %d bytes from the guest: %w", len(s), errdefs.ErrOutOfRange)
		}
	}
	return nil
}

// writeBounded bounds each write to the agent. ttrpc holds its send lock
// across a write and heeds no context there: a guest that stops reading
// its end would block that call and every later one for ever (the shim's
// pod teardown among them). A write that times out may leave half a frame
// behind, which no later frame can follow, so the connection is closed:
// every call fails at once and the sandbox's teardown goes on to QEMU.
type writeBounded struct {
	net.Conn
	timeout time.Duration
}

func (w *writeBounded) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return w.Conn.Write(p) // a connection without deadlines
	}
	n, err := w.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		w.Conn.Close()
		err = fmt.Errorf("the agent read nothing for %s: %w", w.timeout, err)
	}
	return n, err
}
