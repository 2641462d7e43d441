package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/agentclient"
	"github.com/hull-runtime/hull/internal/storage"
)

// maxSpec bounds the spec sent to the agent, which refuses larger ones.
const maxSpec = 1 << 20

// Stdio are a process's standard streams on the host; nil means none.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Terminal       bool
}

// ContainerConfig describes a container to create in a sandbox.
type ContainerConfig struct {
	ID     string
	Bundle string
	Spec   *specs.Spec
	Stdio  Stdio
	// Start runs the container's process as soon as it is created, in the
	// same call to the agent: for a container that nothing has to see
	// between its creation and its start (no hooks).
	Start bool
}

// Container is a container created in a sandbox.
type Container struct {
	sb      *Sandbox
	id      string
	storage *storage.Container
	init    *Process
	// hooksTime is what the spec's startContainer hooks may take, which
	// run in the guest as it starts the container.
	hooksTime time.Duration
}

// startHooksTime is what startContainer hooks may take in the guest: their
// timeouts, and a minute for each that names none (the agent's bound).
func startHooksTime(spec *specs.Spec) time.Duration {
	var d time.Duration
	if spec.Hooks == nil {
		return 0
	}
	for _, h := range spec.Hooks.StartContainer {
		if h.Timeout != nil && *h.Timeout > 0 {
			d += time.Duration(*h.Timeout) * time.Second
		} else {
			d += time.Minute
		}
	}
	return d
}

// Process is a container's init or exec process seen from the host: its
// exit status and the copies of its output.
type Process struct {
	sb      *Sandbox
	cid     string
	execID  string
	pid     uint32
	streams []net.Conn
	// output is done when every byte of stdout and stderr has been copied.
	output sync.WaitGroup
	// moved tells whether the output copies still move (Wait's grace).
	moved outputProgress
	// oomKilled is what Wait learnt of the container's OOM kills.
	oomKilled atomic.Bool
}

// outputProgress is what the output copies of a process report: when a
// byte last came from the guest, and how many copies are blocked writing
// to the host's side (a slow reader there is not the guest's doing).
type outputProgress struct {
	lastRead atomic.Int64 // unix nanoseconds
	writing  atomic.Int32
}

// CreateContainer shares the container's rootfs and mounts with the guest,
// opens its streams and creates it in the guest, up to (not including)
// running its process unless cfg.Start. On error nothing of it is left.
func (s *Sandbox) CreateContainer(ctx context.Context, cfg ContainerConfig) (_ *Container, retErr error) {
	if err := ValidID(cfg.ID); err != nil {
		return nil, err
	}
	if s.shared == nil {
		return nil, fmt.Errorf("sandbox %s has no shared directory for container rootfs: %w", s.id, errdefs.ErrFailedPrecondition)
	}
	if cfg.Spec.Process == nil || len(cfg.Spec.Process.Args) == 0 {
		return nil, fmt.Errorf("container %s: spec has no process.args: %w", cfg.ID, errdefs.ErrInvalidArgument)
	}
	st, guestSpec, err := storage.PrepareContainer(s.shared, cfg.ID, cfg.Bundle, cfg.Spec)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	defer func() {
		if retErr != nil {
			st.Cleanup()
		}
	}()
	// Hooks run on the host, at the points the spec names; the guest never
	// sees host paths. Not startContainer's: the runtime spec has their
	// paths resolved, and them run, in the container, which is in the
	// guest.
	if h := guestSpec.Hooks; h != nil && len(h.StartContainer) > 0 {
		guestSpec.Hooks = &specs.Hooks{StartContainer: h.StartContainer}
	} else {
		guestSpec.Hooks = nil
	}
	// A host network namespace path means nothing in the guest; the VM's
	// own namespace holds the links mirrored from it.
	guestSpec.Linux = guestNetworkNamespace(guestSpec.Linux, !s.pod)
	b, err := json.Marshal(guestSpec)
	if err != nil {
		return nil, fmt.Errorf("container %s: spec: %w", cfg.ID, err)
	}
	if len(b) > maxSpec {
		return nil, fmt.Errorf("container %s: spec of %d bytes, over %d: %w", cfg.ID, len(b), maxSpec, errdefs.ErrInvalidArgument)
	}
	p, stdio, err := s.openProcess(cfg.ID, "", cfg.Stdio)
	if err != nil {
		return nil, err
	}
	req := &agent.CreateContainerRequest{ContainerId: cfg.ID, Spec: b, Stdio: stdio, Start: cfg.Start, Bundle: cfg.Bundle}
	// The sandbox's set-up put off to this, its first container, goes
	// with it once: the guest does it first, so a creation that failed may
	// have done it, and sending it again would only fail. Other creations
	// wait for that one; without a set-up pending they go on side by side.
	s.setupMu.Lock()
	req.Sandbox = s.pendingSetup
	if req.Sandbox == nil {
		s.setupMu.Unlock()
	}
	pid, err := s.agent.CreateContainerWith(ctx, req)
	if req.Sandbox != nil {
		s.pendingSetup = nil
		s.setupMu.Unlock()
	}
	if err != nil {
		p.closeStreams()
		return nil, fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	p.pid = pid
	return &Container{sb: s, id: cfg.ID, storage: st, init: p, hooksTime: startHooksTime(cfg.Spec)}, nil
}

// openProcess opens the IO streams of a process and starts copying.
func (s *Sandbox) openProcess(cid, execID string, host Stdio) (*Process, *agent.Stdio, error) {
	p := &Process{sb: s, cid: cid, execID: execID}
	stdio := &agent.Stdio{Terminal: host.Terminal, Stdin: host.Stdin != nil, Stdout: host.Stdout != nil, Stderr: host.Stderr != nil && !host.Terminal}
	open := func(fd agent.StreamHeader_Fd) (net.Conn, error) {
		c, err := s.io.Open(cid, execID, fd)
		if err != nil {
			p.closeStreams()
			return nil, fmt.Errorf("container %s: %w", cid, err)
		}
		p.streams = append(p.streams, c)
		return c, nil
	}
	if stdio.Stdin {
		c, err := open(agent.StreamHeader_STDIN)
		if err != nil {
			return nil, nil, err
		}
		go copyIn(c, host.Stdin)
	}
	for _, o := range []struct {
		want bool
		fd   agent.StreamHeader_Fd
		w    io.Writer
	}{
		{stdio.Stdout, agent.StreamHeader_STDOUT, host.Stdout},
		{stdio.Stderr, agent.StreamHeader_STDERR, host.Stderr},
	} {
		if !o.want {
			continue
		}
		c, err := open(o.fd)
		if err != nil {
			return nil, nil, err
		}
		p.output.Add(1)
		go func() {
			defer p.output.Done()
			copyOut(o.w, c, &p.moved)
		}()
	}
	return p, stdio, nil
}

// copyIn feeds the process's stdin and closes the stream's write side at
// EOF, which the agent passes on as EOF of the process's stdin.
func copyIn(c net.Conn, r io.Reader) {
	_, _ = io.Copy(c, r)
	_ = c.Close()
}

// copyOut copies a process's output until the agent closes the stream,
// then closes the host's side: a stream stays in the IO session, with its
// buffer, until both sides closed it.
func copyOut(w io.Writer, c net.Conn, pr *outputProgress) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			pr.lastRead.Store(time.Now().UnixNano())
			pr.writing.Add(1)
			_, werr := w.Write(buf[:n])
			pr.writing.Add(-1)
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Process) closeStreams() {
	for _, c := range p.streams {
		c.Close()
	}
}

// ID returns the container id.
func (c *Container) ID() string { return c.id }

// StackView mounts the container's root and bind mounts, as the host
// shares them, over "/" of this process's own mount namespace, for tools
// that join it by the pid the runtime reports (storage.StackView).
func (c *Container) StackView(spec *specs.Spec) error {
	if c.storage == nil {
		return fmt.Errorf("container %s has no shared root: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	return c.storage.StackView(spec)
}

// Init returns the container's init process.
func (c *Container) Init() *Process { return c.init }

// Start runs the container's process.
func (c *Container) Start(ctx context.Context) error {
	if err := c.sb.agent.StartContainerWithin(ctx, c.id, c.hooksTime); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return nil
}

// ResizePty sets the window size of the terminal of the init (execID
// empty) or of an exec process.
func (c *Container) ResizePty(ctx context.Context, execID string, width, height uint32) error {
	return c.sb.agent.ResizePty(ctx, c.id, execID, width, height)
}

// Signal signals the container's init, or all its processes.
func (c *Container) Signal(ctx context.Context, sig uint32, all bool) error {
	return c.sb.agent.Signal(ctx, c.id, "", sig, all)
}

// Delete removes the container from the guest (killing it first if force)
// and unshares its rootfs and mounts.
func (c *Container) Delete(ctx context.Context, force bool) error {
	// Its processes may have written since the guest last flushed (execs
	// that outlived the init): Shutdown asks the guest to flush again.
	c.sb.guestSynced.Store(false)
	err := c.sb.agent.RemoveContainer(ctx, c.id, force)
	if err != nil && !errdefs.IsNotFound(err) {
		select {
		case <-c.sb.Done():
			// The VM is gone and the container with it; what is left is
			// on the host.
		default:
			return fmt.Errorf("container %s: %w", c.id, err)
		}
	}
	return c.Release()
}

// Release frees the container's host side (its IO streams, its mounts in
// the shared directory) without asking the guest: for a container whose
// VM has ended (Sandbox.Shutdown).
func (c *Container) Release() error {
	c.init.closeStreams()
	return c.storage.Cleanup()
}

// Pid returns the process's pid in the guest.
func (p *Process) Pid() uint32 { return p.pid }

// outputGrace bounds the wait for the last output once the agent reported
// the exit: the agent answers only after it wrote everything, so this is
// only the transit through the host.
const outputGrace = 10 * time.Second

// Wait waits for the process to exit and for all its output to reach the
// host's writers, and returns its exit status (128+n for signal n).
func (p *Process) Wait(ctx context.Context) (int32, error) {
	e, err := p.sb.agent.WaitExit(ctx, p.cid, p.execID, false)
	if err != nil {
		return -1, err
	}
	p.oomKilled.Store(e.OOMKilled)
	return p.drain(e.Status)
}

// OOMKilled says, once Wait has returned for a container's init, that the
// OOM killer killed processes of the container.
func (p *Process) OOMKilled() bool { return p.oomKilled.Load() }

// WaitLast waits as Wait does for a process whose exit ends every process
// of the VM, and the VM with them (the init of its only container, in a
// PID namespace of its own): the guest flushes its unwritten pages before
// it answers, so that Sandbox.Shutdown can end the VM without asking the
// guest again.
func (p *Process) WaitLast(ctx context.Context) (int32, error) {
	e, err := p.sb.agent.WaitExit(ctx, p.cid, p.execID, true)
	if err != nil {
		return -1, err
	}
	if e.Synced {
		p.sb.guestSynced.Store(true)
	}
	p.oomKilled.Store(e.OOMKilled)
	return p.drain(e.Status)
}

// drain returns status once the process's output has all arrived.
func (p *Process) drain(status int32) (int32, error) {
	done := make(chan struct{})
	go func() {
		p.output.Wait()
		close(done)
	}()
	// The process is gone: its streams, stdin's included, serve no more
	// (an exec's would otherwise stay in the session until the VM ends).
	defer p.closeStreams()
	answered := time.Now()
	tick := time.NewTicker(outputGrace / 10)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return status, nil
		case <-tick.C:
		}
		// The grace runs while nothing comes from the guest: output that
		// still arrives, or waits for a slow reader on the host, is not
		// cut off.
		if p.moved.writing.Load() > 0 {
			continue
		}
		last := time.Unix(0, p.moved.lastRead.Load())
		if last.Before(answered) {
			last = answered
		}
		if time.Since(last) > outputGrace {
			return status, fmt.Errorf("no process output for %s after its exit, and its streams still open (a process left holding them?)", outputGrace)
		}
	}
}

// Exec runs an additional process in the container; Wait on the returned
// process gives its exit status once all its output has arrived.
func (c *Container) Exec(ctx context.Context, execID string, process *specs.Process, stdio Stdio) (*Process, error) {
	if err := ValidID(execID); err != nil {
		return nil, err
	}
	if process == nil || len(process.Args) == 0 {
		return nil, fmt.Errorf("exec %s: process.args is empty: %w", execID, errdefs.ErrInvalidArgument)
	}
	b, err := json.Marshal(process)
	if err != nil {
		return nil, err
	}
	if len(b) > maxSpec {
		return nil, fmt.Errorf("exec %s: process of %d bytes: %w", execID, len(b), errdefs.ErrInvalidArgument)
	}
	// What the exec writes comes after any flush the guest made.
	c.sb.guestSynced.Store(false)
	p, agentStdio, err := c.sb.openProcess(c.id, execID, stdio)
	if err != nil {
		return nil, err
	}
	pid, err := c.sb.agent.ExecProcess(ctx, c.id, execID, b, agentStdio)
	if err != nil {
		p.closeStreams()
		return nil, fmt.Errorf("container %s: %w", c.id, err)
	}
	p.pid = pid
	return p, nil
}

// Processes lists the guest pids of the container's processes.
func (c *Container) Processes(ctx context.Context) ([]uint32, error) {
	return c.sb.agent.ListProcesses(ctx, c.id)
}

// ProcessInfo lists what `ps -ef` shows of the container's processes.
func (c *Container) ProcessInfo(ctx context.Context) ([]agentclient.Process, error) {
	return c.sb.agent.ListProcessInfo(ctx, c.id)
}

// SignalProcess signals the init (execID empty) or an exec process; all
// signals every process of the container.
func (c *Container) SignalProcess(ctx context.Context, execID string, sig uint32, all bool) error {
	return c.sb.agent.Signal(ctx, c.id, execID, sig, all)
}
