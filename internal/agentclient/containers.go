package agentclient

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// maxPids bounds the process list a guest may answer with.
const maxPids = 1 << 16

// maxErrorMessage bounds the text of an error the guest sends: it ends up
// in logs, on terminals and in containerd's answers.
const maxErrorMessage = 1024

// native turns the agent's RPC status into hull's error vocabulary, so that
// callers test errors with errdefs, whatever channel they came through.
// Errors that are no status (the caller's context, a closed connection)
// are kept as they are. Of a status only the code and a bounded, printable
// message are kept: its details are the guest's to fill, and decoding them
// (errgrpc decodes nested statuses recursively, each level copying the
// rest) lets a few hundred KiB of reply take gigabytes of the host.
func native(call string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("agent %s: %w", call, err)
	}
	clean := status.New(st.Code(), Printable(st.Message(), maxErrorMessage))
	return fmt.Errorf("agent %s: %w", call, errgrpc.ToNative(clean.Err()))
}

// Printable cuts s to at most max bytes and escapes what is not printable
// (control characters, invalid UTF-8), so that text from the guest cannot
// forge log lines or drive a terminal.
func Printable(s string, max int) string {
	cut := len(s) > max
	if cut {
		s = s[:max]
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			if cut && !utf8.FullRuneInString(s[i:]) {
				i = len(s) // a rune split by the cut
				continue
			}
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// CreateContainer creates a container from a spec whose paths are guest
// paths; the streams named in stdio must already be open.
func (c *Client) CreateContainer(ctx context.Context, id string, spec []byte, stdio *agent.Stdio) (uint32, error) {
	return c.CreateContainerWith(ctx, &agent.CreateContainerRequest{ContainerId: id, Spec: spec, Stdio: stdio})
}

// CreateContainerWith sends a complete CreateContainer request: with the
// sandbox's set-up or the start of the process folded in.
func (c *Client) CreateContainerWith(ctx context.Context, req *agent.CreateContainerRequest) (uint32, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.CreateContainer(ctx, req)
	if err != nil {
		return 0, native("create container", err)
	}
	return checkPid("create container", r.Pid)
}

// maxPid is the kernel's largest pid (PID_MAX_LIMIT on 64-bit).
const maxPid = 1 << 22

// checkPid refuses a pid no guest process can have: callers pass it on
// (containerd takes it as the task's pid).
func checkPid(call string, pid uint32) (uint32, error) {
	if pid == 0 || pid > maxPid {
		return 0, fmt.Errorf("agent %s: pid %d from the guest: %w", call, pid, errdefs.ErrOutOfRange)
	}
	return pid, nil
}

// StartContainer runs the user process of a created container.
func (c *Client) StartContainer(ctx context.Context, id string) error {
	return c.StartContainerWithin(ctx, id, 0)
}

// StartContainerWithin is StartContainer for a start that may take extra
// time more than a call: the container's startContainer hooks run in it.
func (c *Client) StartContainerWithin(ctx context.Context, id string, extra time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout+extra)
	defer cancel()
	if _, err := c.api.StartContainer(ctx, &agent.StartContainerRequest{ContainerId: id}); err != nil {
		return native("start container", err)
	}
	return nil
}

// ExecProcess runs process (OCI process JSON) in a running container.
func (c *Client) ExecProcess(ctx context.Context, id, execID string, process []byte, stdio *agent.Stdio) (uint32, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.ExecProcess(ctx, &agent.ExecProcessRequest{ContainerId: id, ExecId: execID, Process: process, Stdio: stdio})
	if err != nil {
		return 0, native("exec process", err)
	}
	return checkPid("exec process", r.Pid)
}

// Signal signals a container's init (execID empty) or exec process, or
// every process of the container.
func (c *Client) Signal(ctx context.Context, id, execID string, sig uint32, all bool) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.SignalProcess(ctx, &agent.SignalProcessRequest{ContainerId: id, ExecId: execID, Signal: sig, All: all}); err != nil {
		return native("signal process", err)
	}
	return nil
}

// Wait waits, as long as ctx allows (no per-call bound: processes run for
// as long as they like), for a process to exit with all its output
// written, and returns its exit status.
func (c *Client) Wait(ctx context.Context, id, execID string) (int32, time.Time, error) {
	e, err := c.WaitExit(ctx, id, execID, false)
	return e.Status, e.At, err
}

// Exit is a process's end as the agent reports it.
type Exit struct {
	// Status is the code, or 128+signal; -1 when unknown.
	Status int32
	At     time.Time
	// Synced says the guest flushed its unwritten pages before it
	// answered (asked with sync).
	Synced bool
	// OOMKilled, for a container's init, says that the OOM killer killed
	// processes of the container.
	OOMKilled bool
}

// WaitExit waits for a process's exit. With sync the guest flushes its
// unwritten pages before it answers: for the last process of a VM about
// to end.
func (c *Client) WaitExit(ctx context.Context, id, execID string, sync bool) (Exit, error) {
	r, err := c.api.WaitProcess(ctx, &agent.WaitProcessRequest{ContainerId: id, ExecId: execID, Sync: sync})
	if err != nil {
		return Exit{Status: -1}, native("wait process", err)
	}
	if r.ExitStatus < 0 || r.ExitStatus > 255 {
		return Exit{Status: -1}, fmt.Errorf("agent wait process: exit status %d: %w", r.ExitStatus, errdefs.ErrOutOfRange)
	}
	return Exit{Status: r.ExitStatus, At: time.Unix(0, r.ExitedAtUnixNano), Synced: r.Synced, OOMKilled: r.OomKilled}, nil
}

// ResizePty sets the terminal size of a process.
func (c *Client) ResizePty(ctx context.Context, id, execID string, width, height uint32) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.ResizePty(ctx, &agent.ResizePtyRequest{ContainerId: id, ExecId: execID, Width: width, Height: height}); err != nil {
		return native("resize pty", err)
	}
	return nil
}

// CloseStdin closes a process's stdin.
func (c *Client) CloseStdin(ctx context.Context, id, execID string) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.CloseStdin(ctx, &agent.CloseStdinRequest{ContainerId: id, ExecId: execID}); err != nil {
		return native("close stdin", err)
	}
	return nil
}

// ListProcesses returns the guest pids of a container's processes.
func (c *Client) ListProcesses(ctx context.Context, id string) ([]uint32, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.ListProcesses(ctx, &agent.ListProcessesRequest{ContainerId: id})
	if err != nil {
		return nil, native("list processes", err)
	}
	if len(r.Pids) > maxPids {
		return nil, fmt.Errorf("agent list processes: %d pids: %w", len(r.Pids), errdefs.ErrOutOfRange)
	}
	return r.Pids, nil
}

// Process is what `ps -ef` shows of a process of a container.
type Process struct {
	Pid, PPid, UID uint32
	Elapsed, CPU   time.Duration
	// TTY is the controlling terminal's device number; 0 for none.
	TTY uint64
	Cmd string
}

// maxCmd bounds a process's command line as the host keeps it.
const maxCmd = 4096

// ListProcessInfo returns what `ps -ef` shows of a container's processes,
// bounded and made printable: the guest writes those strings. An agent
// that sends pids only gives processes with their pid alone.
func (c *Client) ListProcessInfo(ctx context.Context, id string) ([]Process, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	r, err := c.api.ListProcesses(ctx, &agent.ListProcessesRequest{ContainerId: id})
	if err != nil {
		return nil, native("list processes", err)
	}
	if len(r.Pids) > maxPids || len(r.Processes) > maxPids {
		return nil, fmt.Errorf("agent list processes: %d pids: %w", max(len(r.Pids), len(r.Processes)), errdefs.ErrOutOfRange)
	}
	out := make([]Process, 0, len(r.Pids))
	if len(r.Processes) == 0 {
		for _, p := range r.Pids {
			out = append(out, Process{Pid: p})
		}
		return out, nil
	}
	for _, p := range r.Processes {
		if p == nil {
			continue
		}
		out = append(out, Process{
			Pid: p.Pid, PPid: p.Ppid, UID: p.Uid, TTY: p.Tty,
			Elapsed: time.Duration(min(p.ElapsedMs, maxDurationMs)) * time.Millisecond,
			CPU:     time.Duration(min(p.CpuMs, maxDurationMs)) * time.Millisecond,
			Cmd:     Printable(p.Cmd, maxCmd),
		})
	}
	return out, nil
}

// maxDurationMs keeps a duration from the guest within time.Duration.
const maxDurationMs = uint64(1<<63-1) / uint64(time.Millisecond)

// RemoveContainer removes a stopped container, or kills it first if force.
func (c *Client) RemoveContainer(ctx context.Context, id string, force bool) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if _, err := c.api.RemoveContainer(ctx, &agent.RemoveContainerRequest{ContainerId: id, Force: force}); err != nil {
		return native("remove container", err)
	}
	return nil
}
